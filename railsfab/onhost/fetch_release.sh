# A release archive from the stage's bucket, fetched by the deploy user into the new release
# folder and checked against the sha256 the controller computed before anything is unpacked.
# The presigned URL comes on stdin as a curl config line: never on a command line, where any
# user of the host could read it. No AWS credentials are needed here.
# Runs as root: sh -c, parameters in the environment (APP_USER, REL, DIGEST, ARCHIVE).
# Exits 10 when the fetch fails, 11 when the digest differs (the file is removed).
set -u
install -d -o "$APP_USER" -g "$APP_USER" -m 0711 "$REL" || exit 1
cd "$REL" || exit 1
# as the deploy user, whose folder it is: root follows no link there
runuser -u "$APP_USER" -- curl --fail --silent --show-error --retry 3 --connect-timeout 10 \
    --max-time 900 --config - --output "$ARCHIVE" || exit 10
got=$(runuser -u "$APP_USER" -- sha256sum "$ARCHIVE" | cut -d' ' -f1)
if [ "$got" != "$DIGEST" ]; then
    runuser -u "$APP_USER" -- rm -f "$ARCHIVE"
    echo "sha256 $got"
    exit 11
fi
echo "ok $got"
