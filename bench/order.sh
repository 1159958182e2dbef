# Sourced by the bench scripts that run several targets in each round.
#
# round_order R TARGET...: the targets in the order round R (from 1) runs
# them, one per line: the list turned round by R-1 places, so that over as
# many rounds as there are targets each target runs once first, once last
# and once in each place between. Reversing the list every other round (as
# these scripts did) does that for two targets only: with three, the middle
# one is always in the middle, and whatever a round's place does to a
# measurement (the box drifting within a round, the row before) falls on
# the others. Two targets: a b, then b a, as before.
round_order() {
  local r=$1; shift
  local targets=("$@") n=$# i
  for ((i = 0; i < n; i++)); do printf '%s\n' "${targets[(r - 1 + i) % n]}"; done
}
