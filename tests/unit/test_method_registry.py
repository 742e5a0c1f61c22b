"""The method registry imports a built-in method only when it is asked for."""

from __future__ import annotations

import subprocess
import sys

from logad.methods import base, get_method


def test_every_builtin_is_registered_under_its_key():
    for name in base._BUILTIN_MODULES:
        assert get_method(name).name == name


def test_looking_up_one_method_imports_no_other_method():
    code = (
        "import sys\n"
        "from logad.methods import get_method\n"
        "get_method('unseen')\n"
        "others = [m for m in ('logad.methods.fastlogad', 'logad.methods.classical', 'torch') if m in sys.modules]\n"
        "print(','.join(others))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
