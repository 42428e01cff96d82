#!/usr/bin/env bash
# Set up Lightbox and run the offline demo: a demo patient, the bot against the local Bot API
# sandbox, and a web chat page on 127.0.0.1 (its address is printed at start).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if .venv/bin/lightbox --help | grep -qE '^\s+demo\b|\{.*demo.*\}|[ ,]demo[ ,]'; then
  exec .venv/bin/lightbox demo "$@"
fi
cat <<'MSG'
Lightbox is installed, but the offline demo is not built yet (it lands with the bot issue).
When it exists, this command will: seed a demo patient from real images in pydicom and pydicom-data,
start the bot against a local Telegram Bot API sandbox, and serve a web chat page on 127.0.0.1 where
you can talk to the bot. Until then, try:   .venv/bin/lightbox --help
MSG
exit 1
