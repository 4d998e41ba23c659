#!/bin/sh
# A small HTTP backend on :8080 that answers every request with its name.
# An asyncio loop without per-request logging: cheap enough to keep up with
# a client opening a new connection every few milliseconds even on a VM
# under software emulation (python3 -m http.server logs every request to
# the journal and starts a thread per connection).
set -eu
name=$1
mkdir -p /srv/www
echo "hello from $name" > /srv/www/index.html
if ! command -v python3 >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3
fi
cat > /usr/local/bin/tiny-backend <<'PY'
#!/usr/bin/python3
"""Answers every HTTP/1.x request on :8080 with /srv/www/index.html (GET /big: 32 MiB), then closes."""
import asyncio

BODY = open("/srv/www/index.html", "rb").read()
RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n"
            b"Connection: close\r\n\r\n" % len(BODY)) + BODY
BIG = 32 << 20
CHUNK = b"x" * 65536


async def handle(reader, writer):
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        if head.startswith(b"GET /big "):
            # A long download (32 MiB) for the tests that keep a transfer
            # open across an upgrade or a failover.
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % BIG)
            for _ in range(BIG // len(CHUNK)):
                writer.write(CHUNK)
                await writer.drain()
        else:
            writer.write(RESPONSE)
            await writer.drain()
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError, OSError):
        pass
    finally:
        writer.close()


async def main():
    server = await asyncio.start_server(handle, None, 8080, backlog=1024, reuse_address=True)
    async with server:
        await server.serve_forever()


asyncio.run(main())
PY
chmod 755 /usr/local/bin/tiny-backend
cat > /etc/systemd/system/backend.service <<UNIT
[Unit]
Description=demo HTTP backend ($name)
After=network-online.target
[Service]
ExecStart=/usr/local/bin/tiny-backend
Restart=always
DynamicUser=yes
[Install]
WantedBy=multi-user.target
UNIT
systemctl daemon-reload
systemctl enable --now backend
