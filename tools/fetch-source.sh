#!/usr/bin/env bash
# Fetch a pinned Debian source package (Debian's patches applied) into DEST:
#
#   tools/fetch-source.sh PACKAGE DEST [WORK]
#
# PACKAGE is one of the pins below: MicroPython (the firmware), mbedtls (the
# TLS library compiled into it) and lwIP (the device firmware's TCP/IP stack). The sha256 of the upstream tarball and of
# Debian's packaging are checked before anything is unpacked. The project's own
# patches for PACKAGE, tools/patches/PACKAGE/*.patch (each says why it is
# needed), are applied after Debian's. Uses a private
# apt configuration so the machine's own apt setup is left untouched: its
# deb-src entry reuses the URI and signing key of the machine's configured
# Debian mirror. WORK (default: DEST's folder/download) keeps the apt state and
# the downloaded files.
set -euo pipefail

PKG=${1:?usage: fetch-source.sh PACKAGE DEST [WORK]}
DEST=${2:?usage: fetch-source.sh PACKAGE DEST [WORK]}
WORK=${3:-$(dirname "$DEST")/download}
SUITE=trixie

# Pins: Debian version, upstream tarball and its sha256, sha256 of Debian's
# packaging (which carries the patches dpkg-source applies).
case "$PKG" in
micropython)
    VERSION=1.25.0+ds-1
    ORIG=micropython_1.25.0+ds.orig.tar.xz
    ORIG_SHA256=7b25be99a502f070b2de81dafc08da7051d992325d6e67daa9045a918fffdbea
    DEBIAN=micropython_1.25.0+ds-1.debian.tar.xz
    DEBIAN_SHA256=87cd89f7900c86b963885dabe25acf3e5348815993f1500278ad8f6464465af4
    ;;
mbedtls)
    VERSION=3.6.6-0.1~deb13u1
    ORIG=mbedtls_3.6.6.orig.tar.bz2
    ORIG_SHA256=8fb65fae8dcae5840f793c0a334860a411f884cc537ea290ce1c52bb64ca007a
    DEBIAN=mbedtls_3.6.6-0.1~deb13u1.debian.tar.xz
    DEBIAN_SHA256=210466c522eeebc85cf2f76bd5aef935b4ebac465559cc0a84f9e73a8ed6601c
    ;;
lwip)
    VERSION=2.2.1+dfsg1-1+deb13u1
    ORIG=lwip_2.2.1+dfsg1.orig.tar.xz
    ORIG_SHA256=83729c274c499d3348e9fbbe043a3113f3fa8953e7efddc7c21c7fcbb1f2b7b1
    DEBIAN=lwip_2.2.1+dfsg1-1+deb13u1.debian.tar.xz
    DEBIAN_SHA256=faa343b3c76d69080240ae1323932b7348fa1d0042f6ad29bd286246660720a9
    ;;
*)
    echo "fetch-source: no pin for package '$PKG'" >&2
    exit 2
    ;;
esac
say() { echo "fetch-source: $*"; }

PATCHES=$(ls "$(dirname "$0")/patches/$PKG"/*.patch 2>/dev/null || true)
STAMP=.fetched-$VERSION
if [ -n "$PATCHES" ]; then
    STAMP=$STAMP-$(cat $PATCHES | sha256sum | cut -c1-12)
fi
if [ -f "$DEST/$STAMP" ]; then
    exit 0
fi

need=()
command -v dpkg-source >/dev/null || need+=(dpkg-dev)
command -v xz >/dev/null || need+=(xz-utils)
command -v bzip2 >/dev/null || need+=(bzip2)
command -v patch >/dev/null || need+=(patch)
if [ ${#need[@]} -gt 0 ]; then
    say "installing ${need[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# The machine's Debian mirror and key, from its deb822 sources (or a one-line list).
sources=$(ls /etc/apt/sources.list.d/*.sources 2>/dev/null | xargs -r grep -l -E '^URIs:.*debian/?$' | head -n1 || true)
if [ -n "$sources" ]; then
    uri=$(awk '/^URIs:/ {print $2; exit}' "$sources")
    key=$(awk '/^Signed-By:/ {print $2; exit}' "$sources")
else
    uri=$(awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' /etc/apt/sources.list 2>/dev/null || true)
    key=/usr/share/keyrings/debian-archive-keyring.gpg
fi
if [ -z "${uri:-}" ]; then
    echo "fetch-source: cannot find the machine's Debian mirror in /etc/apt" >&2
    exit 1
fi

mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
mkdir -p "$WORK/apt/sources.list.d" "$WORK/apt/lists/partial" "$WORK/apt/cache/archives/partial" "$WORK/src"
{
    echo "Types: deb-src"
    echo "URIs: $uri"
    echo "Suites: $SUITE"
    echo "Components: main"
    [ -n "${key:-}" ] && echo "Signed-By: $key"
} > "$WORK/apt/sources.list.d/$SUITE-src.sources"

aptopts=(
    -o "Dir::Etc::SourceList=/dev/null"
    -o "Dir::Etc::SourceParts=$WORK/apt/sources.list.d"
    -o "Dir::State::Lists=$WORK/apt/lists"
    -o "Dir::Cache=$WORK/apt/cache"
    -o "Dir::Etc::Preferences=/dev/null"
    -o "Dir::Etc::PreferencesParts=/dev/null"
    -o "APT::Sandbox::User=root"
)
if [ ! -f "$WORK/src/$ORIG" ] || [ ! -f "$WORK/src/$DEBIAN" ]; then
    say "downloading $PKG $VERSION (Debian $SUITE source)"
    apt-get -qq "${aptopts[@]}" update
    (cd "$WORK/src" && apt-get -qq "${aptopts[@]}" source --download-only "$PKG=$VERSION")
fi

for f in "$ORIG:$ORIG_SHA256" "$DEBIAN:$DEBIAN_SHA256"; do
    echo "${f#*:}  $WORK/src/${f%%:*}" | sha256sum -c --quiet - || {
        echo "fetch-source: sha256 mismatch for ${f%%:*}" >&2
        rm -f "$WORK/src/${f%%:*}"
        exit 1
    }
done

rm -rf "$DEST.tmp"
dpkg-source --no-copy -x "$WORK/src/${PKG}_${VERSION}.dsc" "$DEST.tmp" >"$WORK/dpkg-source-$PKG.log" 2>&1 || {
    cat "$WORK/dpkg-source-$PKG.log" >&2
    exit 1
}
for p in $PATCHES; do
    patch -s -p1 -d "$DEST.tmp" < "$p" || { echo "fetch-source: $p does not apply" >&2; exit 1; }
done
rm -rf "$DEST"
mv "$DEST.tmp" "$DEST"
touch "$DEST/$STAMP"
say "$PKG $VERSION ready in $DEST"
