#!/usr/bin/env bash
# The bite tests' share of CI: a rotating few of chaos/bite_test.go's cases
# (each runs the harness against a server with one planted bug, which the
# checker planted for must catch, and the unbroken server on the same seed
# and schedule, which must pass). BITE_COUNT cases (default 2) of round
# BITE_ROUND (default: the day, counted since 1970 in UTC), so consecutive
# days run the next cases and the sixteen take eight days. A case takes 40 s
# to 3 minutes (two runs); two add at most about 5 minutes to CI.
# BITE_ROUND=N replays a round; LEASECHAOS_BITE=bug,... (bite.sh) picks cases.
set -euo pipefail
cd "$(dirname "$0")/../.."
round="${BITE_ROUND:-$(($(date -u +%s) / 86400))}"
count="${BITE_COUNT:-2}"
echo "=== bite: round $round, $count case(s) (BITE_ROUND=$round replays them)"
LEASECHAOS_BITE_ROUND="$round" LEASECHAOS_BITE_COUNT="$count" \
	exec go test -tags chaos ./chaos/ -run 'TestBite$' -count=1 -v -timeout 15m
