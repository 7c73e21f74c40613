"""The three placement searches, each a pure function of the cut arrays and the nodes it may
use, returning (period, groups, cuts): exhaustive, particle swarm, and the fixed-order chain."""
