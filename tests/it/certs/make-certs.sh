#!/usr/bin/env bash
# Regenerates the private test CA and server certificates used by tests/it/tls.rs.
# They are committed (valid for 100 years) so tests need no openssl at run time.
set -euo pipefail
cd "$(dirname "$0")"
days=36500
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days $days \
    -subj "/CN=Switchyard Test CA" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign"
issue() {
    local name=$1 san=$2
    openssl req -newkey rsa:2048 -nodes -keyout "$name.key" -out "$name.csr" -subj "/CN=$name"
    printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' "$san" > "$name.ext"
    openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -out "$name.pem" \
        -days $days -extfile "$name.ext"
    rm -f "$name.csr" "$name.ext"
}
issue localhost "DNS:localhost"
issue wrong-name "DNS:upstream.test"
rm -f ca.srl ca.key
