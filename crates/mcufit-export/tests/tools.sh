#!/usr/bin/env bash
# Kept for old callers: the installer is scripts/setup-verify-tools.sh (same arguments).
exec bash "$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)/scripts/setup-verify-tools.sh" "$@"
