"""Defaults the real API server fills in on create, so reads look like a real cluster's."""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]


def _container(c: Obj) -> None:
    c.setdefault(
        "imagePullPolicy",
        "Always"
        if str(c.get("image", "")).endswith(":latest") or ":" not in str(c.get("image", ""))
        else "IfNotPresent",
    )
    c.setdefault("resources", {})
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    for port in c.get("ports") or []:
        port.setdefault("protocol", "TCP")
    limits, requests = c["resources"].get("limits"), c["resources"].get("requests")
    if limits and not requests:
        c["resources"]["requests"] = dict(limits)  # requests default to limits


def pod_spec(spec: Obj, *, restart: str = "Always") -> None:
    for c in spec.get("initContainers") or []:
        _container(c)
    for c in spec.get("containers") or []:
        _container(c)
    spec.setdefault("restartPolicy", restart)
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    spec.setdefault("enableServiceLinks", True)
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    spec.setdefault("priority", 0)
    spec.setdefault("serviceAccountName", "default")
    # The DefaultTolerationSeconds admission plugin adds these to every pod.
    tolerations = spec.setdefault("tolerations", [])
    for key in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"):
        if not any(t.get("key") == key for t in tolerations):
            tolerations.append(
                {"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
            )
    spec.setdefault("serviceAccount", spec["serviceAccountName"])


def qos_class(spec: Obj) -> str:
    requests_any, guaranteed = False, True
    for c in spec.get("containers") or []:
        res = c.get("resources") or {}
        limits, requests = res.get("limits") or {}, res.get("requests") or {}
        requests_any = requests_any or bool(limits) or bool(requests)
        for name in ("cpu", "memory"):
            if name not in limits or requests.get(name, limits[name]) != limits[name]:
                guaranteed = False
    if not requests_any:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def _template(spec: Obj, restart: str = "Always") -> None:
    template = spec.setdefault("template", {})
    template.setdefault("metadata", {}).setdefault("creationTimestamp", None)
    pod_spec(template.setdefault("spec", {}), restart=restart)


def apply(obj: Obj) -> None:
    kind, spec = obj.get("kind"), obj.get("spec")
    if kind == "Pod" and spec is not None:
        pod_spec(spec)
        obj["status"] = {"phase": "Pending", "qosClass": qos_class(spec)}
    elif kind == "Deployment" and spec is not None:
        spec.setdefault("replicas", 1)
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
        spec.setdefault(
            "strategy",
            {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
            },
        )
        _template(spec)
        obj["status"] = {}
    elif kind == "ReplicaSet" and spec is not None:
        spec.setdefault("replicas", 1)
        _template(spec)
        obj["status"] = {"replicas": 0}
    elif kind == "StatefulSet" and spec is not None:
        spec.setdefault("replicas", 1)
        spec.setdefault("podManagementPolicy", "OrderedReady")
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault(
            "updateStrategy", {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}
        )
        spec.setdefault(
            "persistentVolumeClaimRetentionPolicy",
            {"whenDeleted": "Retain", "whenScaled": "Retain"},
        )
        _template(spec)
        obj["status"] = {"replicas": 0, "availableReplicas": 0}
    elif kind == "Job" and spec is not None:
        _job(obj, spec)
    elif kind == "CronJob" and spec is not None:
        spec.setdefault("concurrencyPolicy", "Allow")
        spec.setdefault("suspend", False)
        spec.setdefault("successfulJobsHistoryLimit", 3)
        spec.setdefault("failedJobsHistoryLimit", 1)
        obj["status"] = {}
    elif kind == "HorizontalPodAutoscaler" and spec is not None:
        spec.setdefault("minReplicas", 1)
        obj["status"] = {"desiredReplicas": 0}  # not omitempty in the API type
    elif kind == "Namespace":
        obj["spec"] = {"finalizers": ["kubernetes"]}
        obj["status"] = {"phase": "Active"}
        obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = obj["metadata"][
            "name"
        ]
    elif kind == "PersistentVolumeClaim" and spec is not None:
        spec.setdefault("volumeMode", "Filesystem")
        obj["status"] = {"phase": "Bound" if spec.get("volumeName") else "Pending"}
    elif kind == "PersistentVolume" and spec is not None:
        spec.setdefault("persistentVolumeReclaimPolicy", "Retain")
        spec.setdefault("volumeMode", "Filesystem")
        obj["status"] = {"phase": "Bound" if spec.get("claimRef") else "Available"}


def _job(obj: Obj, spec: Obj) -> None:
    spec.setdefault("parallelism", 1)
    spec.setdefault("completions", 1)
    spec.setdefault("backoffLimit", 6)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    spec.setdefault("podReplacementPolicy", "TerminatingOrFailed")
    spec.setdefault("manualSelector", False)
    _template(spec, restart="Never")
    obj["status"] = {}


def job_labels(obj: Obj) -> None:
    """The selector and pod labels the Job controller stamps with the Job's uid (after create)."""
    uid, name = obj["metadata"]["uid"], obj["metadata"]["name"]
    labels = {
        "batch.kubernetes.io/controller-uid": uid,
        "batch.kubernetes.io/job-name": name,
        "controller-uid": uid,
        "job-name": name,
    }
    spec = obj["spec"]
    if not spec.get("selector"):
        spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
    spec["template"].setdefault("metadata", {}).setdefault("labels", {}).update(labels)
    obj["metadata"].setdefault("labels", {}).update(labels)
