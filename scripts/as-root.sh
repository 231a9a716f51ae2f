#!/bin/sh
# Run a command as root: as is when already root (containers, minimal images
# without sudo), through sudo otherwise. The lab needs root for its network namespaces.
set -eu
if [ "$(id -u)" -eq 0 ]; then exec "$@"; fi
command -v sudo >/dev/null 2>&1 || { echo "as-root.sh: this needs root (and sudo is not installed): run it as root" >&2; exit 1; }
exec sudo "$@"
