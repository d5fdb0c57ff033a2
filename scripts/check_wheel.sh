#!/usr/bin/env bash
# A non-editable install in a fresh virtual environment must carry its migrations and the
# shipped database: create, check and read a catalog from outside the source tree.
set -euo pipefail
src="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

python -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet "$src"
cd "$work"
export XDG_DATA_HOME="$work/xdg"
unset PAI_CATALOG_DB
bin="$work/venv/bin/pai-catalog"

"$bin" resolve pytorch latest --accelerator gpu --region cn-hangzhou
PAI_CATALOG_DB="$work/new.db" "$bin" db upgrade
PAI_CATALOG_DB="$work/new.db" "$bin" db current | grep -q "(at head)"
PAI_CATALOG_DB="$work/new.db" "$bin" db check
# The wheel carries docs/SCHEMA.md, which publish --datasette describes the schema from.
PAI_CATALOG_DB="$work/new.db" "$bin" publish "$work/published.db" --datasette >/dev/null
grep -q '"image_manifest"' "$work/published.metadata.json"
"$work/venv/bin/python" -c "import catalog, sys; print(catalog.__file__); sys.exit('$src' in catalog.__file__)"
echo "check_wheel: non-editable install OK"
