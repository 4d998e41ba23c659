#!/bin/sh
# A small HTTP backend on :8080 that answers with its name.
set -eu
name=$1
mkdir -p /srv/www
echo "hello from $name" > /srv/www/index.html
if ! command -v python3 >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3
fi
cat > /etc/systemd/system/backend.service <<UNIT
[Unit]
Description=demo HTTP backend
After=network-online.target
[Service]
ExecStart=/usr/bin/python3 -m http.server 8080 --directory /srv/www
Restart=always
DynamicUser=yes
[Install]
WantedBy=multi-user.target
UNIT
systemctl daemon-reload
systemctl enable --now backend
