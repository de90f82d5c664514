#!/usr/bin/env bash
# Idempotent set-up step: make PostgreSQL 15 (Debian bookworm packages) and the
# TimescaleDB extension (Apache-licensed edition) available to the system's
# PostgreSQL 15 server binaries.
#
# - Installs postgresql-15 without creating/starting a system cluster.
# - Fast path: exits immediately if TimescaleDB $TSDB_VERSION is already installed.
# - Otherwise builds TimescaleDB from Debian trixie's *source* package (no trixie
#   binaries are installed; the system's apt configuration is not modified) and
#   installs it into the PostgreSQL 15 share/lib dirs.
#
# The downloaded source is kept in
#   ${XDG_CACHE_HOME:-$HOME/.cache}/adi-analytics-ingestion/timescaledb
# so a rebuild does not need to download it again.
set -euo pipefail

PG_MAJOR=15
TSDB_VERSION=2.19.3
PG_BINDIR=/usr/lib/postgresql/${PG_MAJOR}/bin
PG_CONFIG=${PG_BINDIR}/pg_config
SOURCE_SUITE=trixie
CACHE_DIR=${XDG_CACHE_HOME:-$HOME/.cache}/adi-analytics-ingestion/timescaledb

log() { printf 'install-postgres: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# --- privileges --------------------------------------------------------------
# Only the privileged steps (apt-get install, writing /etc, make install) need
# root; the fast path and the build work for any user.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    env DEBIAN_FRONTEND=noninteractive "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo env DEBIAN_FRONTEND=noninteractive "$@"
  else
    die "root privileges needed for '$*': run as root or install sudo"
  fi
}

# --- Debian packages -----------------------------------------------------------
is_installed() {
  [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" = "installed" ]
}

APT_UPDATED=0
ensure_packages() {
  local missing=() p
  for p in "$@"; do
    is_installed "$p" || missing+=("$p")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  if [ "$APT_UPDATED" -eq 0 ]; then
    log "apt-get update"
    as_root apt-get update -qq >&2
    APT_UPDATED=1
  fi
  log "installing: ${missing[*]}"
  as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

if ! is_installed "postgresql-${PG_MAJOR}"; then
  # Make sure the package install does not create (and start) a "main" cluster.
  as_root mkdir -p /etc/postgresql-common/createcluster.d
  as_root sh -c 'printf "%s\n" "create_main_cluster = false" \
    > /etc/postgresql-common/createcluster.d/50-no-main-cluster.conf'
  ensure_packages "postgresql-${PG_MAJOR}"
fi
[ -x "$PG_CONFIG" ] || die "$PG_CONFIG not found after installing postgresql-${PG_MAJOR}"

# --- fast path -------------------------------------------------------------------
SHAREDIR=$("$PG_CONFIG" --sharedir)
PKGLIBDIR=$("$PG_CONFIG" --pkglibdir)
tsdb_installed() {
  [ -f "$SHAREDIR/extension/timescaledb--${TSDB_VERSION}.sql" ] &&
    [ -f "$PKGLIBDIR/timescaledb-${TSDB_VERSION}.so" ]
}
if tsdb_installed; then
  log "TimescaleDB ${TSDB_VERSION} already present for PostgreSQL ${PG_MAJOR}; nothing to do"
  exit 0
fi

log "TimescaleDB ${TSDB_VERSION} not installed; building it from the Debian ${SOURCE_SUITE} source package"
if [ "$(id -u)" -ne 0 ] && ! command -v sudo >/dev/null 2>&1; then
  die "installing TimescaleDB needs root: run as root or install sudo"
fi
ensure_packages "postgresql-server-dev-${PG_MAJOR}" libpq-dev cmake gcc make dpkg-dev

# --- mirror URL from the machine's own apt configuration -----------------------------
find_mirror() {
  local f uri
  # deb822: first URI of a "deb" stanza whose Suites contain exactly "bookworm".
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    uri=$(awk '
      function flush() {
        if (types ~ /(^|[ \t])deb([ \t]|$)/ && suites ~ /(^|[ \t])bookworm([ \t]|$)/ && uris != "" && !found) {
          split(uris, u, /[ \t]+/); print u[1]; found = 1
        }
        types = ""; suites = ""; uris = ""
      }
      /^[ \t]*$/ { flush(); next }
      /^[ \t]*#/ { next }
      tolower($1) == "types:"  { sub(/^[^:]*:[ \t]*/, ""); types  = $0; next }
      tolower($1) == "suites:" { sub(/^[^:]*:[ \t]*/, ""); suites = $0; next }
      tolower($1) == "uris:"   { sub(/^[^:]*:[ \t]*/, ""); uris   = $0; next }
      END { flush() }
    ' "$f")
    if [ -n "$uri" ]; then printf '%s\n' "$uri"; return 0; fi
  done
  # One-line format: "deb [options] http(s)://... bookworm main ..."
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    uri=$(awk '
      $1 == "deb" {
        i = 2
        if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
        if ($i ~ /^https?:\/\// && $(i+1) == "bookworm") { print $i; exit }
      }
    ' "$f")
    if [ -n "$uri" ]; then printf '%s\n' "$uri"; return 0; fi
  done
  return 1
}

# --- fetch the source package (private apt state, system config untouched) ----------
mkdir -p "$CACHE_DIR"
SRC_DIR=""
find_src_dir() {
  local d
  for d in "$CACHE_DIR"/timescaledb-"${TSDB_VERSION}"*/; do
    if [ -f "$d/CMakeLists.txt" ] && [ -f "$d/version.config" ]; then
      SRC_DIR=${d%/}
      return 0
    fi
  done
  return 1
}

if ! find_src_dir; then
  dsc=""
  for f in "$CACHE_DIR"/timescaledb_"${TSDB_VERSION}"+dfsg-*.dsc; do
    [ -f "$f" ] && dsc=$f
  done
  if [ -z "$dsc" ]; then
    MIRROR=$(find_mirror) || die "could not determine a Debian mirror from /etc/apt/sources.list{,.d}"
    MIRROR=${MIRROR%/}
    log "using mirror $MIRROR (${SOURCE_SUITE} deb-src)"
    APT_DIR=$CACHE_DIR/apt
    mkdir -p "$APT_DIR/lists/partial" "$APT_DIR/cache/archives/partial"
    printf 'deb-src %s %s main\n' "$MIRROR" "$SOURCE_SUITE" > "$APT_DIR/sources.list"
    APT_OPTS=(
      -o "Dir::Etc::SourceList=$APT_DIR/sources.list"
      -o "Dir::Etc::SourceParts=/dev/null"
      -o "Dir::State::Lists=$APT_DIR/lists"
      -o "Dir::Cache=$APT_DIR/cache"
      -o "APT::Sandbox::User=$(id -un)"
    )
    log "apt-get update (private ${SOURCE_SUITE} deb-src list)"
    apt-get "${APT_OPTS[@]}" update -qq >&2
    SRC_VERSION=$(apt-cache "${APT_OPTS[@]}" showsrc timescaledb 2>/dev/null |
      awk '$1 == "Version:" { print $2 }' | grep -E "^${TSDB_VERSION//./\\.}\+dfsg-" | sort -V | tail -n 1 || true)
    [ -n "$SRC_VERSION" ] ||
      die "Debian ${SOURCE_SUITE} does not offer timescaledb ${TSDB_VERSION}+dfsg-* source"
    log "downloading source package timescaledb ${SRC_VERSION}"
    (cd "$CACHE_DIR" && apt-get "${APT_OPTS[@]}" source --download-only -qq "timescaledb=${SRC_VERSION}" >&2)
    dsc=$CACHE_DIR/timescaledb_${SRC_VERSION#*:}.dsc
    [ -f "$dsc" ] || die "download did not produce $dsc"
    rm -rf "$APT_DIR"  # the package indexes are no longer needed (~20 MB)
  else
    log "using cached source package $(basename "$dsc")"
  fi
  log "unpacking $(basename "$dsc")"
  # Unpack into a temporary name first so an interrupted run never leaves a
  # half-extracted tree that would later be mistaken for a complete one.
  unpack_tmp=$CACHE_DIR/.unpack.$$
  rm -rf "$unpack_tmp"
  dsc_base=$(basename "$dsc")
  (cd "$CACHE_DIR" && dpkg-source -q --no-check -x "$dsc_base" "$unpack_tmp" >&2)
  src_name=${dsc_base#timescaledb_}
  src_name=timescaledb-${src_name%-*}
  rm -rf "${CACHE_DIR:?}/$src_name"
  mv "$unpack_tmp" "$CACHE_DIR/$src_name"
  find_src_dir || die "unpacked source tree for timescaledb ${TSDB_VERSION} not found in $CACHE_DIR"
fi

grep -Eq "^version = ${TSDB_VERSION//./\\.}\$" "$SRC_DIR/version.config" ||
  die "$SRC_DIR is not TimescaleDB ${TSDB_VERSION}"
[ ! -d "$SRC_DIR/tsl" ] || log "warning: $SRC_DIR contains tsl/; it is not built (APACHE_ONLY=ON)"

# --- build and install -------------------------------------------------------------
BUILD_DIR=$CACHE_DIR/build-${TSDB_VERSION}
BUILD_LOG=$CACHE_DIR/build-${TSDB_VERSION}.log
rm -rf "$BUILD_DIR"
: > "$BUILD_LOG"
run_logged() {
  if ! "$@" >>"$BUILD_LOG" 2>&1; then
    tail -n 40 "$BUILD_LOG" >&2
    die "command failed: $* (full log: $BUILD_LOG)"
  fi
}
log "configuring in $BUILD_DIR (log: $BUILD_LOG)"
start=$(date +%s)
# Git is disabled on purpose: the unpacked Debian source is not a git checkout,
# so git would only produce "fatal: not a git repository" noise.
run_logged cmake -S "$SRC_DIR" -B "$BUILD_DIR" \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_DISABLE_FIND_PACKAGE_Git=ON \
  -DAPACHE_ONLY=ON \
  -DREGRESS_CHECKS=OFF \
  -DTAP_CHECKS=OFF \
  -DUSE_TELEMETRY=OFF \
  -DPG_CONFIG="$PG_CONFIG"
log "building"
run_logged make -C "$BUILD_DIR" -j"$(nproc 2>/dev/null || echo 2)"
log "installing into $SHAREDIR and $PKGLIBDIR"
run_logged as_root make -C "$BUILD_DIR" install
log "build+install took $(( $(date +%s) - start )) s"

tsdb_installed || die "install finished but timescaledb ${TSDB_VERSION} files are missing"
log "TimescaleDB ${TSDB_VERSION} (Apache edition) installed for PostgreSQL ${PG_MAJOR}"
