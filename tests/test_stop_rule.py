"""init_comparison's stop rule on a hand-made case whose answer is known: a running member is
stopped only when it can no longer change its init's fastest seed-median time, its 10% band, or
the band's interpolation neighbours."""

import numpy as np

from experiments.init_comparison import stop_rule

R, S = 6, 3  # rates (ascending) x seeds of one init
INDEX = [("orthogonal", r, s) for r in range(R) for s in range(S)]


def _state(cross_by_rate, running_by_rate):
    cross = np.full(R * S, -1)
    running = np.zeros(R * S, bool)
    for r in range(R):
        for s in range(S):
            m = r * S + s
            c = cross_by_rate[r][s]
            if c is None:
                running[m] = running_by_rate[r][s]
            else:
                cross[m] = c
    return cross, np.zeros(R * S, bool), running


def test_stop_rule_keeps_what_can_matter_and_stops_the_rest():
    stop = stop_rule(INDEX, R, S, band=0.1)
    run = [[True] * S] * R
    cross, div, running = _state(
        [[None, None, None],  # rate 0: running (below the band, its nearest finite neighbour: needed)
         [105, 106, 104],  # rate 1: median 105, inside the band (<= 110)
         [100, 100, None],  # rate 2: median fixed at 100 (two of three crossed): the fastest
         [300, 310, 305],  # rate 3: median 305, finite: the band's upper neighbour
         [None, None, None],  # rate 4: running, beyond rate 3: cannot matter
         [None, 900, None]],  # rate 5: running, beyond rate 3: cannot matter
        run)
    halt = stop(120, cross, div, running).reshape(R, S)
    assert not halt[0].any()  # the lower neighbour is still open: it may set the band's lower end
    assert halt[2].tolist() == [False, False, True]  # its median is fixed: the last seed cannot change it
    assert halt[4].all() and halt[5].tolist() == [True, False, True]
    assert not halt[[1, 3]].any()  # nothing running there
    # before (1 + band) x the fastest, the band is not final: nothing stops
    assert not stop(108, cross, div, running).any()


def test_stop_rule_waits_while_an_open_rate_could_still_be_inside_the_band():
    stop = stop_rule(INDEX, R, S, band=0.1)
    cross, div, running = _state(
        [[None, None, None], [None, None, None], [100, 102, 101], [None, None, None], [None, None, None],
         [None, None, None]], [[True] * S] * R)
    # at t = 105 an open rate's median may still be <= 111: wait
    assert not stop(105, cross, div, running).any()
    # at t = 200 every open rate is outside the band; the nearest neighbours (1 and 3) are open, so needed,
    # and the rates beyond them are needed too until a finite neighbour is known
    assert not stop(200, cross, div, running).any()
