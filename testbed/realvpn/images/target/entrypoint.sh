#!/bin/bash
# Target host: httpd on :80 serving "gt-target says hello" and /cgi-bin/whoami (the caller's IPv4),
# dnsmasq on :53 resolving target.gt to this container's address. Runs until stopped.
set -euo pipefail
mkdir -p /www/cgi-bin
echo "gt-target says hello" >/www/index.html
cat >/www/cgi-bin/whoami <<'CGI'
#!/bin/sh
# the caller's address as it arrives (busybox httpd gives IPv4 as [::ffff:a.b.c.d])
a=${REMOTE_ADDR#[}; a=${a%]}; a=${a#::ffff:}
printf 'Content-Type: text/plain\r\n\r\n%s\n' "$a"
CGI
chmod +x /www/cgi-bin/whoami
me=$(ip -4 -o address show dev eth0 | awk '{print $4}' | cut -d/ -f1)
dnsmasq --keep-in-foreground --no-resolv --no-hosts --user=root --port=53 \
  --address="/target.gt/$me" --log-facility=- &
busybox httpd -f -p 80 -h /www &
trap 'kill $(jobs -p) 2>/dev/null; exit 0' TERM INT
echo "target up: $me (httpd :80, dnsmasq :53 target.gt)"
wait -n
echo "target: a server exited" >&2
exit 1
