#!/usr/bin/env bash
# Make this checkout runnable on a fresh machine; every Makefile target calls it first.
#
#   scripts/bootstrap.sh [--with FEATURE]...
#
# - .venv: created with python3.11 (or python3 >= 3.11) if missing; the project is
#   installed `-e .[dev,kafka]` and the test bed `-e testbed` only when a pyproject.toml
#   changed since the last install.
# - System packages, by feature. `zookeeper` is always wanted (skipped when ZK_HOSTS
#   is set); `--with chromium`, `--with patroni` add more. A feature is installed with
#   apt-get only when its check fails, as root (or with `sudo -n`) on Debian/Ubuntu.
# - Jars, by feature: `--with hdfs` (Apache Hadoop 3.5.0: hadoop-hdfs, hadoop-common and
#   their runtime dependencies) and `--with kafka` (Apache Kafka 4.4.0: kafka_2.13 and
#   kafka-tools, KRaft) are fetched from Maven Central with `mvn` into the git-ignored
#   .cache/jars/<name>-<version>/ (Maven's own repository in .cache/m2), pinned versions,
#   nothing else downloaded. A fetch that fails (no Maven Central) only warns: the tests
#   that need the jars then skip, or fail under CI.
#
# Quiet and fast (well under 2 s) when everything is already there. Idempotent.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
STAMP="$VENV/.quorumgate-installed"

say() { printf 'bootstrap: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

# ---------------------------------------------------------------- features
# To add one: `packages_FEATURE` prints its Debian packages, `have_FEATURE` checks it.

packages_zookeeper() { echo zookeeper; }
have_zookeeper() {
    [[ -n "${ZK_HOSTS:-}" ]] && return 0
    local jar
    for jar in zookeeper.jar slf4j-log4j12.jar log4j-1.2.jar; do
        [[ -f "/usr/share/java/$jar" ]] || return 1
    done
    command -v java >/dev/null || [[ -x "${JAVA_HOME:-/nonexistent}/bin/java" ]]
}

packages_chromium() { echo chromium chromium-driver; }
have_chromium() { command -v chromium >/dev/null && command -v chromedriver >/dev/null; }

# python3-kazoo: Patroni's ZooKeeper DCS (the package only depends on etcd|consul|kazoo|...);
# curl and jq: the Patroni drain/restore hooks in deploy/hooks.
packages_patroni() { echo patroni postgresql python3-kazoo curl jq; }
have_patroni() {
    command -v patroni >/dev/null && compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null \
        && /usr/bin/python3 -c 'import kazoo' 2>/dev/null \
        && command -v curl >/dev/null && command -v jq >/dev/null
}

# hdfs, kafka: a JRE, Maven to fetch the jars, and what the deploy hooks use (bash, curl,
# jq, flock; `ip` for the HDFS simulation's per-DataNode source addresses).
packages_hdfs() { echo default-jre-headless maven curl jq util-linux iproute2; }
have_hdfs() {
    command -v java >/dev/null && command -v mvn >/dev/null && command -v curl >/dev/null \
        && command -v jq >/dev/null && command -v flock >/dev/null && command -v ip >/dev/null
}
packages_kafka() { echo default-jre-headless maven curl jq; }
have_kafka() {
    command -v java >/dev/null && command -v mvn >/dev/null && command -v jq >/dev/null \
        && command -v curl >/dev/null
}

# wrk: the benchmarks' HTTP load generator (C, epoll): a Python client on the same 2 cores
# saturates long before the server does.
packages_wrk() { echo wrk; }
have_wrk() { command -v wrk >/dev/null; }

known_feature() { declare -F "have_$1" >/dev/null && declare -F "packages_$1" >/dev/null; }

# ---------------------------------------------------------------- jars (Maven Central)
# `jars_FEATURE` prints "<cache name> <groupId:artifactId:version>..." for a feature that
# needs jars. Keep these versions in step with testbed/quorumgate_testbed/workloads/jars.py.

HADOOP_VERSION=3.5.0
KAFKA_VERSION=4.4.0
LOG4J_VERSION=2.25.5
jars_hdfs() {
    echo "hadoop-$HADOOP_VERSION org.apache.hadoop:hadoop-hdfs:$HADOOP_VERSION" \
        "org.apache.hadoop:hadoop-common:$HADOOP_VERSION" \
        "org.apache.hadoop:hadoop-hdfs-client:$HADOOP_VERSION"
}
jars_kafka() {
    # log4j-slf4j-impl: Kafka logs through slf4j 1.7 and its distribution ships log4j2's
    # binding; without it the brokers would log nothing.
    echo "kafka-$KAFKA_VERSION org.apache.kafka:kafka_2.13:$KAFKA_VERSION" \
        "org.apache.kafka:kafka-tools:$KAFKA_VERSION" \
        "org.apache.logging.log4j:log4j-slf4j-impl:$LOG4J_VERSION"
}

# fetch_jars NAME COORD...: every runtime jar of COORDs into .cache/jars/NAME/lib, once.
# The stamp file holds the coordinates, so a change of version fetches again.
fetch_jars() {
    local name=$1; shift
    local dest="$ROOT/.cache/jars/$name" want="$*"
    [[ -f "$dest/.complete" && "$(cat "$dest/.complete")" == "$want" ]] && return 0
    command -v mvn >/dev/null || { say "no mvn: cannot fetch $name"; return 1; }
    say "fetching $name from Maven Central into .cache/jars/$name (once)"
    local work coord group artifact version deps=""
    work="$(mktemp -d)"
    for coord in "$@"; do
        IFS=: read -r group artifact version <<<"$coord"
        deps+="<dependency><groupId>$group</groupId><artifactId>$artifact</artifactId>"
        deps+="<version>$version</version></dependency>"
    done
    cat >"$work/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>
<groupId>quorumgate.cache</groupId><artifactId>$name</artifactId><version>1</version>
<packaging>pom</packaging><dependencies>$deps</dependencies></project>
POM
    rm -rf "$dest.tmp"
    if ! (cd "$work" && timeout 1800 mvn -B -q -Dmaven.repo.local="$ROOT/.cache/m2" \
            dependency:copy-dependencies -DincludeScope=runtime \
            -DoutputDirectory="$dest.tmp/lib" >"$work/mvn.log" 2>&1); then
        say "mvn could not fetch $name: $(grep -m1 -E 'ERROR' "$work/mvn.log" || tail -1 "$work/mvn.log")"
        rm -rf "$work" "$dest.tmp"
        return 1
    fi
    rm -rf "$work" "$dest"
    mv "$dest.tmp" "$dest"
    echo "$want" >"$dest/.complete"
}

ensure_jars() {
    local feature spec=()
    for feature in "$@"; do
        declare -F "jars_$feature" >/dev/null || continue
        read -r -a spec <<<"$("jars_$feature")"
        fetch_jars "${spec[@]}" \
            || say "$feature: jars missing; its tests skip (and fail under CI, CI=true)"
    done
    return 0
}

# ---------------------------------------------------------------- system packages

docker_engine() { command -v docker >/dev/null && timeout 5 docker info >/dev/null 2>&1; }

# Prints the command prefix that can run apt-get (empty for root); fails if none can.
apt_runner() {
    [[ -r /etc/debian_version ]] && command -v apt-get >/dev/null || return 1
    if [[ "$(id -u)" == 0 ]]; then
        echo ""
    elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        echo "sudo -n"
    else
        return 1
    fi
}

cannot_install_why() {
    if [[ ! -r /etc/debian_version ]] || ! command -v apt-get >/dev/null; then
        echo "not Debian/Ubuntu"
    else
        echo "not root and no passwordless sudo"
    fi
}

apt_install() {
    local runner
    runner="$(apt_runner)" || die "cannot install $*: $(cannot_install_why)"
    say "installing Debian packages: $*"
    $runner env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null \
        || say "apt-get update failed; trying the install with the lists at hand"
    $runner env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null \
        || die "apt-get install $* failed"
}

ensure_features() {
    local feature missing=() packages=() more=()
    for feature in "$@"; do
        "have_$feature" && continue
        missing+=("$feature")
        read -r -a more <<<"$("packages_$feature")"
        packages+=("${more[@]}")
    done
    ((${#missing[@]})) || return 0
    if apt_runner >/dev/null; then
        apt_install "${packages[@]}"
        for feature in "${missing[@]}"; do
            "have_$feature" || die "installed ${packages[*]} but '$feature' is still missing"
        done
        return 0
    fi
    for feature in "${missing[@]}"; do
        if [[ "$feature" != zookeeper ]]; then
            die "cannot install $feature ($("packages_$feature")): $(cannot_install_why)"
        fi
        say "cannot install ZooKeeper: $(cannot_install_why) — set ZK_HOSTS=host:port to use" \
            "an existing ensemble, or start Docker for testcontainers"
        docker_engine || exit 1
        say "a Docker engine answers: tests will use testcontainers' zookeeper image"
    done
}

# ---------------------------------------------------------------- python

pick_python() {
    local candidate
    for candidate in python3.11 python3; do
        command -v "$candidate" >/dev/null || continue
        if "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

ensure_venv() {
    if [[ ! -x "$VENV/bin/python" ]] || ! "$VENV/bin/python" -c '' 2>/dev/null; then
        local python
        python="$(pick_python)" || die "need Python 3.11 or newer (python3.11 or python3)"
        if ! "$python" -c 'import ensurepip, venv' 2>/dev/null; then
            apt_install python3-venv  # Debian's python3 ships venv separately
        fi
        say "creating $VENV with $("$python" -V 2>&1)"
        rm -rf "$VENV"
        "$python" -m venv "$VENV"
    fi
    local want have=""
    want="$(cat "$ROOT/pyproject.toml" "$ROOT/testbed/pyproject.toml" "$VENV/pyvenv.cfg" \
        | sha256sum | cut -d' ' -f1)"
    [[ -f "$STAMP" ]] && have="$(cat "$STAMP")"
    if [[ "$want" != "$have" ]]; then
        say "installing the project and its test bed into .venv (a pyproject.toml changed)"
        "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
            -e "${ROOT}[dev,kafka]" -e "${ROOT}/testbed"
        echo "$want" >"$STAMP"
    fi
}

# ---------------------------------------------------------------- main

main() {
    local features=(zookeeper)
    while (($#)); do
        case "$1" in
            --with) [[ $# -ge 2 ]] || die "--with needs a feature"; features+=("$2"); shift 2 ;;
            --with=*) features+=("${1#--with=}"); shift ;;
            -h|--help) sed -n '2,12s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; return 0 ;;
            *) die "unknown argument: $1 (see --help)" ;;
        esac
    done
    local feature
    for feature in "${features[@]}"; do
        known_feature "$feature" || die "unknown feature '$feature' (known: zookeeper chromium patroni hdfs kafka)"
    done
    # One bootstrap at a time per checkout (make test and make demo may race).
    local lock
    lock="${TMPDIR:-/tmp}/quorumgate-bootstrap-$(printf '%s' "$ROOT" | sha256sum | cut -c1-12).lock"
    exec 9>"$lock"
    flock -w 600 9 || die "another bootstrap holds $lock"
    ensure_features "${features[@]}"
    ensure_jars "${features[@]}"
    ensure_venv
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    main "$@"
fi
