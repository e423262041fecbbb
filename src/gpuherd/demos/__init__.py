"""Demos beyond `gpuherd.demo` (the local broker, `make run`).

- `kube`: `gpuherd demo --kubernetes`, the nightly render on a simulated two-node k3s cluster.

A demo runs the real commands as subprocesses (the simulated cluster, `gpuherd serve`) and
talks to them as a user would: the Kubernetes API through gpuherd's client, the brokers through
their sockets. It never imports the simulated cluster, which is a test double.
"""
