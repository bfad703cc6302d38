"""Before Qt starts on Linux: name the missing system library and its package, instead of Qt's generic message.

Since Qt 6.5 the X11 platform plugin ("xcb") needs libxcb-cursor, which minimal installs lack. Without it Qt
prints "Could not load the Qt platform plugin "xcb" ... no Qt platform plugin could be initialized" and aborts,
naming neither the library nor the package to install.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from typing import Callable, Mapping, Optional

XCB_CURSOR_SONAME = "libxcb-cursor.so.0"
XCB_CURSOR_HELP = ("Qt's X11 platform plugin needs the xcb cursor library (libxcb-cursor.so.0), which is not "
                   "installed. Install it, then start PriorPath Desktop again: on Debian/Ubuntu "
                   "'sudo apt-get install libxcb-cursor0', on Fedora 'sudo dnf install xcb-util-cursor'.")


def qt_platform(environ: Mapping[str, str]) -> str:
    """The platform plugin Qt tries first on Linux: ``QT_QPA_PLATFORM``'s first entry if set ("xcb:opts;wayland"
    -> "xcb"), else wayland in a Wayland session, else xcb."""
    chosen = environ.get("QT_QPA_PLATFORM", "").strip()
    if chosen:
        return chosen.split(";")[0].split(":")[0].strip()
    if environ.get("XDG_SESSION_TYPE") == "wayland" and environ.get("WAYLAND_DISPLAY"):
        return "wayland"
    return "xcb"


def has_xcb_cursor() -> bool:
    """Whether libxcb-cursor can be loaded (the linker's cache first, then loading it by its soname)."""
    if ctypes.util.find_library("xcb-cursor"):
        return True
    try:
        ctypes.CDLL(XCB_CURSOR_SONAME)
    except OSError:
        return False
    return True


def missing_system_library(environ: Optional[Mapping[str, str]] = None, platform: Optional[str] = None,
                           library_present: Optional[Callable[[], bool]] = None) -> Optional[str]:
    """What to install before Qt can start, or None (also off Linux, or on another platform plugin)."""
    environ = os.environ if environ is None else environ
    platform = sys.platform if platform is None else platform
    if not platform.startswith("linux") or qt_platform(environ) != "xcb":
        return None
    return None if (library_present or has_xcb_cursor)() else XCB_CURSOR_HELP
