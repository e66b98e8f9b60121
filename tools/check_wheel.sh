#!/usr/bin/env bash
# Builds the sdist, then the wheel from that sdist (as `python -m build` does),
# installs the wheel into a fresh venv and uses it from outside the source tree,
# so a build input missing from the sdist, or an import that only works in the
# checkout, fails here rather than on a user's machine.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$PY" -m build --outdir "$work/dist" . >"$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
"$PY" -m venv "$work/venv"
"$work/venv/bin/pip" install -q "$work"/dist/*.whl >"$work/pip.log" 2>&1 || { cat "$work/pip.log"; exit 1; }
cd "$work"
"$work/venv/bin/python" - <<'PY'
import engine, engine._native, os, tempfile
assert "site-packages" in engine.__file__, engine.__file__
with tempfile.TemporaryDirectory() as d, engine.open(os.path.join(d, "db")) as db:
    kv = db.namespace()
    kv.put("k", "v", metadata={"m": 1})
    assert kv.get_with_metadata("k") == engine.ValueWithMetadata("v", {"m": 1})
    assert kv.list().keys == [engine.KeyInfo("k", None, {"m": 1})]
print("wheel ok:", engine.__version__, os.path.basename(engine._native.__file__))
PY
"$work/venv/bin/kvengine" --help >/dev/null 2>&1 || { echo "kvengine console script missing or broken"; exit 1; }
echo "wheel: ok"
