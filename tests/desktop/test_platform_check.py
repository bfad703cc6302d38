"""The launcher names the missing xcb cursor library and its package before Qt fails with a generic message."""
from __future__ import annotations

import sys

import pytest

from priorpath_desktop import app, platform_check
from priorpath_desktop.platform_check import missing_system_library, qt_platform


def test_which_platform_qt_tries_first():
    assert qt_platform({}) == "xcb"
    assert qt_platform({"QT_QPA_PLATFORM": "offscreen"}) == "offscreen"
    assert qt_platform({"QT_QPA_PLATFORM": "xcb:nograb;wayland"}) == "xcb"
    assert qt_platform({"XDG_SESSION_TYPE": "wayland", "WAYLAND_DISPLAY": "wayland-0"}) == "wayland"


@pytest.mark.parametrize("environ, platform, expected", [
    ({"QT_QPA_PLATFORM": "xcb"}, "linux", True),
    ({"DISPLAY": ":0"}, "linux", True),  # xcb by default
    ({"QT_QPA_PLATFORM": "offscreen"}, "linux", False),
    ({"XDG_SESSION_TYPE": "wayland", "WAYLAND_DISPLAY": "wayland-0"}, "linux", False),
    ({"QT_QPA_PLATFORM": "xcb"}, "win32", False),
    ({"QT_QPA_PLATFORM": "xcb"}, "darwin", False),
])
def test_the_library_is_asked_for_only_where_xcb_needs_it(environ, platform, expected):
    message = missing_system_library(environ, platform, library_present=lambda: False)
    assert (message is not None) == expected
    if expected:
        assert "libxcb-cursor0" in message and "xcb-util-cursor" in message and "apt-get" in message
    assert missing_system_library(environ, platform, library_present=lambda: True) is None


def test_the_launcher_says_what_to_install_and_stops_before_qt(monkeypatch, capsys):
    monkeypatch.setenv("QT_QPA_PLATFORM", "xcb")
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(platform_check, "has_xcb_cursor", lambda: False)
    monkeypatch.setattr("priorpath_desktop.main_window.MainWindow", lambda *a, **k: pytest.fail("Qt was started"))
    assert app.main([]) == 1
    err = capsys.readouterr().err
    assert err.startswith("priorpath-desktop: Qt's X11 platform plugin needs the xcb cursor library")
    assert "sudo apt-get install libxcb-cursor0" in err and "sudo dnf install xcb-util-cursor" in err


def test_an_installed_library_is_found():
    import ctypes.util

    if not ctypes.util.find_library("xcb-cursor"):
        pytest.skip("libxcb-cursor is not installed here")
    assert platform_check.has_xcb_cursor()
