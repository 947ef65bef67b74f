#!/usr/bin/env bash
# Audit the locked dependencies (constraints.txt) with pip-audit, in a venv of its own.
# Exit 1 on a known vulnerability not listed in security/audit-ignore.txt. Where no
# vulnerability service can be reached (a machine that reaches only a package mirror),
# say so loudly and exit 0: security/advisories.yaml is still checked by the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${AUDIT_VENV:-.audit-venv}
test -x "$venv/bin/pip-audit" || {
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "pip-audit==2.10.1"
}
ignores=()
while read -r id _; do
    [[ -z "$id" || "$id" == \#* ]] || ignores+=(--ignore-vuln "$id")
done < security/audit-ignore.txt
out=$(mktemp)
trap 'rm -f "$out"' EXIT
set +e
"$venv/bin/pip-audit" --strict --no-deps --disable-pip --progress-spinner off \
    -r constraints.txt "${ignores[@]}" >"$out" 2>&1
rc=$?
set -e
if [[ $rc -eq 0 ]]; then
    echo "audit: no known vulnerabilities in the lock"
    tail -n 3 "$out"
elif grep -q "known vulnerabilit" "$out"; then
    cat "$out"
    echo "audit: FAILED: fix the versions above or list them with a reason in security/audit-ignore.txt"
    exit 1
elif grep -qE "could not be audited|ConnectionError|Failed to resolve|Max retries" "$out"; then
    echo "audit: NOT RUN: pip-audit reached no vulnerability service from this machine"
    echo "audit: (security/advisories.yaml is checked against the lock by the test suite)"
else
    cat "$out"
    echo "audit: pip-audit failed (exit $rc)"
    exit 1
fi
