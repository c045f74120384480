#!/bin/sh
# The entrypoint of nyc311-s3:local: MinIO's command line (`[minio] server DIR... [--address ADDR]
# [--console-address ADDR]`) started as moto's S3 server, so docker-compose.yml's minio service
# runs unchanged. Any other command runs as it is (like the official image's entrypoint).
#
# moto keeps buckets and objects in memory: the data directories are accepted and left unused
# (a restart starts empty), and there is no console, so --console-address is accepted and ignored.
set -eu

[ "${1:-}" = minio ] && shift
if [ "${1:-}" != server ]; then
    exec "$@"
fi
shift

port=9000
dirs=""
while [ $# -gt 0 ]; do
    case $1 in
        --address) [ $# -ge 2 ] || { echo "s3: --address needs a value" >&2; exit 2; }
                   port=${2##*:}; shift 2 ;;
        --address=*) port=${1##*:}; shift ;;
        --console-address) [ $# -ge 2 ] || { echo "s3: --console-address needs a value" >&2; exit 2; }
                           shift 2 ;;
        --console-address=*) shift ;;
        -*) echo "s3: MinIO option $1 is not supported by this stand-in" >&2; exit 2 ;;
        *) dirs="$dirs $1"; shift ;;
    esac
done
case $port in
    ''|*[!0-9]*) echo "s3: --address needs a port, as :9000 or HOST:9000" >&2; exit 2 ;;
esac

echo "s3: moto's S3 server on 0.0.0.0:$port; objects are kept in memory, not in${dirs:- a data directory}" >&2
exec moto_server -H 0.0.0.0 -p "$port"
