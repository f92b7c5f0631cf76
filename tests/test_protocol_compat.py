"""protocol/ runs inside Nuke (Python 3.10/3.11) and Blender (3.11/3.13): no newer syntax,
and nothing heavier than pyzmq + msgpack at import."""

import ast
import subprocess
import sys
from pathlib import Path

PROTOCOL = Path(__file__).resolve().parents[1] / "protocol"


def test_protocol_parses_as_python_3_10():
    for path in sorted(PROTOCOL.glob("*.py")):
        ast.parse(path.read_text(), filename=str(path), feature_version=(3, 10))


def test_protocol_imports_only_light_dependencies():
    code = (
        "import sys, longanim.protocol, longanim.protocol.client, longanim.protocol.wire;"
        "heavy = {'numpy', 'torch', 'cv2', 'longanim.engine'} & set(sys.modules);"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
