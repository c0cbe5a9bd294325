#!/usr/bin/env bash
# Fetch the pinned MicroPython source (Debian trixie's source package, Debian's
# patches applied) into $1 (default: micropython/src). The archive's sha256 is
# checked before anything is unpacked. Uses a private apt configuration so the
# machine's own apt setup is left untouched: its deb-src entry reuses the URI and
# signing key of the machine's configured Debian mirror.
set -euo pipefail

DEST=${1:-micropython/src}
WORK=${2:-micropython/download}
PKG=micropython
VERSION=1.25.0+ds-1
ORIG=micropython_1.25.0+ds.orig.tar.xz
ORIG_SHA256=7b25be99a502f070b2de81dafc08da7051d992325d6e67daa9045a918fffdbea
SUITE=trixie

if [ -f "$DEST/.fetched-$VERSION" ]; then
    exit 0
fi

need=()
command -v dpkg-source >/dev/null || need+=(dpkg-dev)
command -v xz >/dev/null || need+=(xz-utils)
if [ ${#need[@]} -gt 0 ]; then
    echo "fetch-micropython: installing ${need[*]}"
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
    echo "fetch-micropython: cannot find the machine's Debian mirror in /etc/apt" >&2
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
if [ ! -f "$WORK/src/$ORIG" ]; then
    echo "fetch-micropython: downloading $PKG $VERSION (Debian $SUITE source)"
    apt-get -qq "${aptopts[@]}" update
    (cd "$WORK/src" && apt-get -qq "${aptopts[@]}" source --download-only "$PKG=$VERSION")
fi

echo "$ORIG_SHA256  $WORK/src/$ORIG" | sha256sum -c --quiet - || {
    echo "fetch-micropython: sha256 mismatch for $ORIG" >&2
    rm -f "$WORK/src/$ORIG"
    exit 1
}

rm -rf "$DEST.tmp"
dpkg-source --no-copy -x "$WORK/src/${PKG}_${VERSION}.dsc" "$DEST.tmp" >"$WORK/dpkg-source.log" 2>&1 || { cat "$WORK/dpkg-source.log" >&2; exit 1; }
rm -rf "$DEST"
mv "$DEST.tmp" "$DEST"
touch "$DEST/.fetched-$VERSION"
echo "fetch-micropython: MicroPython $VERSION ready in $DEST"
