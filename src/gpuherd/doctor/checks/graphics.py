"""OpenGL/EGL/Vulkan: is rendering on the NVIDIA GPU, or will it fall back to llvmpipe?"""

from __future__ import annotations

import ctypes
import glob
from typing import Any

from gpuherd.doctor.checks.env import needed_capabilities
from gpuherd.doctor.context import Context
from gpuherd.doctor.model import Check

EGL_VENDOR_DIRS = ("/usr/share/glvnd/egl_vendor.d", "/etc/glvnd/egl_vendor.d")
VULKAN_ICD_DIRS = ("/usr/share/vulkan/icd.d", "/etc/vulkan/icd.d")


def _jsons(ctx: Context, dirs: tuple[str, ...]) -> list[str]:
    found: list[str] = []
    for directory in dirs:
        found += [p.rsplit("/", 1)[-1] for p in glob.glob(str(ctx.root / directory / "*.json"))]
    return sorted(found)


def check_gl_vendor(ctx: Context) -> Check:
    needs, why, _explicit = needed_capabilities(ctx)
    egl = _jsons(ctx, EGL_VENDOR_DIRS)
    icds = _jsons(ctx, VULKAN_ICD_DIRS)
    lib = ctx.find_lib("libEGL_nvidia.so.0")
    evidence = {"egl_vendors": egl, "vulkan_icds": icds, "libEGL_nvidia": lib}
    nvidia_egl = any("nvidia" in name for name in egl) and lib is not None
    if "graphics" not in needs:
        return Check(
            "gl-vendor",
            "skip",
            "no OpenGL/EGL/Vulkan use detected (--need graphics to check anyway)",
            None,
            evidence,
        )
    reason = why.get("graphics", "--need graphics")
    if not nvidia_egl:
        mesa = [name for name in egl if "mesa" in name]
        what = (
            f"only Mesa's EGL vendor ({', '.join(mesa)}) is present"
            if mesa
            else "no NVIDIA EGL vendor (10_nvidia.json + libEGL_nvidia.so.0) is present"
        )
        return Check(
            "gl-vendor",
            "fail",
            f"{what}: rendering falls back to llvmpipe on the CPU ({reason}); a render that "
            "takes 5 minutes on the GPU took over 60 this way",
            "add 'graphics' to NVIDIA_DRIVER_CAPABILITIES (e.g. compute,utility,graphics or "
            "all) so the runtime mounts libEGL_nvidia.so.0 and 10_nvidia.json",
            evidence,
        )
    if not any("nvidia" in name for name in icds):
        return Check(
            "gl-vendor",
            "warn",
            "NVIDIA EGL is present but no nvidia_icd.json: Vulkan will not use the GPU",
            "mount /usr/share/vulkan/icd.d/nvidia_icd.json "
            "(NVIDIA_DRIVER_CAPABILITIES with graphics does this)",
            evidence,
        )
    return Check(
        "gl-vendor",
        "ok",
        "NVIDIA EGL vendor, libEGL_nvidia.so.0 and Vulkan ICD present",
        None,
        evidence,
    )


_EGL_VENDOR, _EGL_VERSION, _GL_VENDOR, _GL_RENDERER = 0x3053, 0x3054, 0x1F00, 0x1F01
_EGL_OPENGL_API, _EGL_SURFACE_TYPE, _EGL_PBUFFER_BIT, _EGL_NONE = 0x30A2, 0x3033, 0x0001, 0x3038
_EGL_RENDERABLE_TYPE, _EGL_OPENGL_BIT, _EGL_WIDTH, _EGL_HEIGHT = 0x3040, 0x0008, 0x3057, 0x3056


_EGL_PLATFORM_DEVICE_EXT, _EGL_PLATFORM_SURFACELESS_MESA = 0x313F, 0x31DD


def _headless_display(egl: Any) -> int:
    """An initialised EGL display without X: default, then the first EGL device (NVIDIA's
    headless path), then Mesa's surfaceless platform."""
    candidates: list[int] = []
    display = egl.eglGetDisplay(None)
    if display:
        candidates.append(display)
    proc = egl.eglGetProcAddress
    proc.restype = ctypes.c_void_p
    proc.argtypes = [ctypes.c_char_p]
    get_platform = proc(b"eglGetPlatformDisplayEXT")
    query_devices = proc(b"eglQueryDevicesEXT")
    if get_platform:
        platform_display = ctypes.CFUNCTYPE(
            ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p
        )(get_platform)
        if query_devices:
            devices = (ctypes.c_void_p * 8)()
            count = ctypes.c_int()
            query = ctypes.CFUNCTYPE(ctypes.c_uint, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)(
                query_devices
            )
            if query(8, devices, ctypes.byref(count)):
                candidates += [
                    platform_display(_EGL_PLATFORM_DEVICE_EXT, devices[i], None)
                    for i in range(count.value)
                ]
        candidates.append(platform_display(_EGL_PLATFORM_SURFACELESS_MESA, None, None))
    for candidate in candidates:
        if candidate and egl.eglInitialize(candidate, None, None):
            return int(candidate)
    raise RuntimeError(
        "eglInitialize failed on every headless display (default, device, surfaceless)"
    )


def _egl_probe() -> dict[str, Any]:
    """Create a pbuffer OpenGL context with libEGL and read the vendor and renderer strings."""
    egl = ctypes.CDLL("libEGL.so.1")
    egl.eglGetDisplay.restype = ctypes.c_void_p
    egl.eglGetDisplay.argtypes = [ctypes.c_void_p]
    egl.eglQueryString.restype = ctypes.c_char_p
    egl.eglQueryString.argtypes = [ctypes.c_void_p, ctypes.c_int]
    egl.eglInitialize.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    egl.eglChooseConfig.argtypes = [
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_int,
        ctypes.c_void_p,
    ]
    egl.eglCreatePbufferSurface.restype = ctypes.c_void_p
    egl.eglCreatePbufferSurface.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    egl.eglCreateContext.restype = ctypes.c_void_p
    egl.eglCreateContext.argtypes = [
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_void_p,
    ]
    egl.eglMakeCurrent.argtypes = [ctypes.c_void_p] * 4
    display = _headless_display(egl)
    result: dict[str, Any] = {
        "egl_vendor": (egl.eglQueryString(display, _EGL_VENDOR) or b"").decode(),
        "egl_version": (egl.eglQueryString(display, _EGL_VERSION) or b"").decode(),
    }
    attrs = (ctypes.c_int * 7)(
        _EGL_SURFACE_TYPE, _EGL_PBUFFER_BIT, _EGL_RENDERABLE_TYPE, _EGL_OPENGL_BIT, _EGL_NONE, 0, 0
    )
    config = ctypes.c_void_p()
    count = ctypes.c_int()
    if (
        not egl.eglChooseConfig(display, attrs, ctypes.byref(config), 1, ctypes.byref(count))
        or count.value < 1
    ):
        raise RuntimeError(f"no pbuffer OpenGL config (EGL vendor {result['egl_vendor']})")
    size = (ctypes.c_int * 5)(_EGL_WIDTH, 16, _EGL_HEIGHT, 16, _EGL_NONE)
    surface = egl.eglCreatePbufferSurface(display, config, size)
    egl.eglBindAPI(_EGL_OPENGL_API)
    context = egl.eglCreateContext(display, config, None, None)
    if not surface or not context or not egl.eglMakeCurrent(display, surface, surface, context):
        raise RuntimeError(
            f"could not create an OpenGL context (EGL vendor {result['egl_vendor']})"
        )
    gl = ctypes.CDLL("libOpenGL.so.0")
    gl.glGetString.restype = ctypes.c_char_p
    gl.glGetString.argtypes = [ctypes.c_uint]
    result["gl_vendor"] = (gl.glGetString(_GL_VENDOR) or b"").decode()
    result["gl_renderer"] = (gl.glGetString(_GL_RENDERER) or b"").decode()
    return result


def check_egl_probe(ctx: Context) -> Check:
    if not ctx.probe:
        return Check("egl-probe", "skip", "not requested (--probe creates a real EGL context)")
    if not ctx.live:
        return Check("egl-probe", "skip", "cannot probe a captured tree (--root)")
    try:
        found = _egl_probe()
    except (OSError, RuntimeError, AttributeError) as exc:
        return Check(
            "egl-probe",
            "fail",
            f"EGL probe failed: {exc}",
            "install libegl1 and libopengl0 and give the container the 'graphics' capability",
        )
    renderer = found.get("gl_renderer", "")
    if "nvidia" not in (found.get("gl_vendor", "") + renderer).lower():
        return Check(
            "egl-probe",
            "fail",
            f"OpenGL renders on {renderer or 'an unknown device'} "
            f"({found.get('gl_vendor')}), not the NVIDIA GPU",
            "add 'graphics' to NVIDIA_DRIVER_CAPABILITIES; see gl-vendor",
            found,
        )
    return Check("egl-probe", "ok", f"OpenGL renders on {renderer}", None, found)
