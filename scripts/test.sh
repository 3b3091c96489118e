#!/usr/bin/env bash
# `npm test`: system programs → typecheck → lint → unit tests → integration tests (real servers).
#
# Every step runs even when an earlier one failed (so one run shows everything that is wrong),
# except a missing system program, which stops here with the install command. The script exits
# non-zero when any step failed and ends with vitest's own summary lines for both projects.
#
# Lint is `biome check .` (= `npm run lint`): lint rules (floating promises, void returns, ...) and
# formatting of code (TypeScript, JavaScript, CSS) fail the run; `npm run format` fixes formatting.
# Hand-laid Markdown and YAML are left out of the formatter (biome.json).
#
# See docs/testing.md.
set -uo pipefail

cd "$(dirname "$0")/.."
if [[ ! -x node_modules/.bin/vitest ]]; then
  echo "npm test: node_modules is missing or incomplete; run \`npm ci\` first." >&2
  exit 1
fi
# Local binaries directly: no npx start-up cost and no npm warnings between the steps.
export PATH="$PWD/node_modules/.bin:$PATH"

# Keep vitest's colours when a person is watching, even though its output goes through `tee`.
if [[ -t 1 && -z "${NO_COLOR:-}" ]]; then export FORCE_COLOR=1; fi

bold() { if [[ -t 1 ]]; then printf '\033[1m%s\033[0m\n' "$*"; else printf '%s\n' "$*"; fi; }
step() { echo; bold "── npm test: $* ──"; }

declare -A results=()
failed=0
record() { # name exit-code
  if [[ "$2" -eq 0 ]]; then results[$1]=ok; else results[$1]="FAILED (exit $2)"; failed=1; fi
}

step "system programs (scripts/ensure-system-deps.sh)"
if ! bash scripts/ensure-system-deps.sh; then
  echo >&2
  echo "npm test: stopping: the integration tests need the programs above." >&2
  echo "          Unit tests alone run without them: npm run test:unit" >&2
  exit 1
fi

step "typecheck (tsc --noEmit)"
tsc --noEmit
record typecheck $?

step "lint (biome check .)"
biome check --diagnostic-level=warn .
record lint $?

logs="$(mktemp -d "${TMPDIR:-/tmp}/npm-test-XXXXXX")"
trap 'rm -rf "$logs"' EXIT

run_vitest() { # project
  step "$1 tests (vitest run --project $1)"
  vitest run --project "$1" 2>&1 | tee "$logs/$1.log"
  record "$1" "${PIPESTATUS[0]}"
}
# One project after the other: integration tests start real servers and must not compete with the
# unit tests for the 2 cores.
run_vitest unit
run_vitest integration

step "summary"
for name in typecheck lint unit integration; do
  printf '  %-12s %s\n' "$name" "${results[$name]}"
done
for project in unit integration; do
  echo
  bold "  vitest $project:"
  # vitest's own summary lines (Test Files / Tests / Errors / Duration), colours stripped.
  sed -E 's/\x1b\[[0-9;]*m//g' "$logs/$project.log" |
    grep -E '^[[:space:]]*(Test Files|Tests|Errors|Duration|No test files found)' ||
    echo "  (no summary: vitest did not finish, see its output above)"
done
# One plain closing line over both projects: "tests: N passed, N failed".
counts() { # word: sum of "N <word>" on vitest's "Tests" lines
  sed -E 's/\x1b\[[0-9;]*m//g' "$logs/unit.log" "$logs/integration.log" | grep -E '^[[:space:]]*Tests ' |
    grep -oE "[0-9]+ $1" | awk '{ n += $1 } END { print n + 0 }'
}
echo
echo "tests: $(counts passed) passed, $(counts failed) failed"
exit "$failed"
