#!/usr/bin/env bash
# Stand-in for upstream Open WebUI's backend/start.sh: same working directory, same
# HOST/PORT variables. `open-webui serve` keeps the WEBUI_SECRET_KEY fallback
# (it writes /app/backend/.webui_secret_key when the variable is unset).
cd "$(dirname "$0")" || exit 1
exec open-webui serve --host "${HOST:-0.0.0.0}" --port "${PORT:-8080}"
