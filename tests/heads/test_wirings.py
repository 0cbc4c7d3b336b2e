"""Wirings (heads/wirings.py): shapes, layer structure of NCPs, sparsity, seeds and option errors.

Shapes: D input features, N neurons.
"""
from collections import deque

import numpy as np
import pytest

from heads import HeadError, Wiring, create_wiring, list_wirings
from heads.wirings import from_ncps_wiring

NCP_OPTIONS = dict(
    inter_neurons=7, command_neurons=5, motor_neurons=3, sensory_fanout=3,
    inter_fanout=2, recurrent_command_synapses=4, motor_fanin=2,
)

# One way to build each kind: (in_features D, units N, options).
KINDS = {
    "fully_connected": (6, 10, {}),
    "random": (6, 10, dict(sparsity=0.4)),
    "ncp": (6, 15, NCP_OPTIONS),
    "autoncp": (6, 24, {}),
}


def test_every_kind_is_covered_here():
    assert sorted(KINDS) == list_wirings()


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_shapes_values_and_layers(kind):
    features, units, options = KINDS[kind]
    wiring = create_wiring(kind, features, units, **options)
    assert isinstance(wiring, Wiring)
    assert wiring.adjacency.shape == (units, units) and wiring.adjacency.dtype == np.int8
    assert wiring.sensory_adjacency.shape == (features, units) and wiring.sensory_adjacency.dtype == np.int8
    assert set(np.unique(wiring.adjacency)) <= {-1, 0, 1}
    assert set(np.unique(wiring.sensory_adjacency)) <= {-1, 0, 1}
    assert wiring.units == units and wiring.in_features == features
    assert sorted(i for layer in wiring.layers for i in layer) == list(range(units))
    assert 1 <= wiring.output_size <= units
    assert wiring.synapse_count == np.count_nonzero(wiring.adjacency)
    assert wiring.sensory_synapse_count == np.count_nonzero(wiring.sensory_adjacency)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_seeds_are_deterministic(kind):
    features, units, options = KINDS[kind]
    a = create_wiring(kind, features, units, **options, seed=5)
    b = create_wiring(kind, features, units, **options, seed=5)
    c = create_wiring(kind, features, units, **options, seed=6)
    assert np.array_equal(a.adjacency, b.adjacency) and np.array_equal(a.sensory_adjacency, b.sensory_adjacency)
    assert a.layers == b.layers
    assert not (
        np.array_equal(a.adjacency, c.adjacency) and np.array_equal(a.sensory_adjacency, c.sensory_adjacency)
    )


def test_fully_connected():
    wiring = create_wiring("fully_connected", 30, 40)
    assert np.all(wiring.adjacency != 0) and np.all(wiring.sensory_adjacency != 0)
    assert wiring.output_size == 40 and wiring.layers == (tuple(range(40)),)
    excitatory = np.mean(wiring.adjacency > 0)
    assert 0.6 < excitatory < 0.73  # 2/3 excitatory, as ncps
    assert create_wiring("fully_connected", 3, 8, output_size=2).output_size == 2


@pytest.mark.parametrize("sparsity", [0.0, 0.25, 0.5, 0.9])
def test_random_sparsity_level(sparsity):
    wiring = create_wiring("random", 20, 30, sparsity=sparsity, output_size=7)
    assert wiring.output_size == 7
    assert wiring.synapse_count == round(30 * 30 * (1 - sparsity))
    assert wiring.sensory_synapse_count == round(20 * 30 * (1 - sparsity))
    if sparsity < 0.9:
        assert 0.55 < np.mean(wiring.adjacency[wiring.adjacency != 0] > 0) < 0.78


def _reachable(wiring: Wiring) -> set[int]:
    """Neurons that a path from some input feature reaches."""
    seen = set(np.flatnonzero(np.any(wiring.sensory_adjacency != 0, axis=0)).tolist())
    queue = deque(seen)
    while queue:
        src = queue.popleft()
        for dest in np.flatnonzero(wiring.adjacency[src] != 0).tolist():
            if dest not in seen:
                seen.add(dest)
                queue.append(dest)
    return seen


def _allowed_ncp(wiring: Wiring) -> np.ndarray:
    """(N, N) bool: the synapses an NCP may have (inter -> command -> command -> motor)."""
    inter, command, motor = (list(layer) for layer in wiring.layers)
    allowed = np.zeros((wiring.units, wiring.units), dtype=bool)
    allowed[np.ix_(inter, command)] = True
    allowed[np.ix_(command, command)] = True
    allowed[np.ix_(command, motor)] = True
    return allowed


def _check_ncp_structure(wiring: Wiring) -> None:
    inter, command, motor = (np.array(layer) for layer in wiring.layers)
    assert motor.tolist() == list(range(wiring.output_size))  # outputs are neurons 0 .. output_size - 1
    # Allowed synapses: inter -> command, command -> command, command -> motor; sensory -> inter only.
    assert not np.any((wiring.adjacency != 0) & ~_allowed_ncp(wiring))
    sensory_targets = np.flatnonzero(np.any(wiring.sensory_adjacency != 0, axis=0))
    assert set(sensory_targets.tolist()) == set(inter.tolist())
    # Every neuron has an input from the layer before it and is reachable from the inputs.
    assert np.all(np.any(wiring.adjacency[np.ix_(inter, command)] != 0, axis=0))
    assert np.all(np.any(wiring.adjacency[np.ix_(command, motor)] != 0, axis=0))
    assert _reachable(wiring) == set(range(wiring.units))
    # Every inter and command neuron feeds the next layer (nothing is a dead end).
    assert np.all(np.any(wiring.adjacency[np.ix_(inter, command)] != 0, axis=1))
    assert np.all(np.any(wiring.adjacency[np.ix_(command, motor)] != 0, axis=1))
    assert np.all(np.any(wiring.sensory_adjacency != 0, axis=1))


@pytest.mark.parametrize("seed", range(5))
def test_ncp_layers_connect_only_forward(seed):
    wiring = create_wiring("ncp", 6, 15, **NCP_OPTIONS, seed=seed)
    assert tuple(len(layer) for layer in wiring.layers) == (7, 5, 3)
    assert wiring.output_size == 3
    _check_ncp_structure(wiring)
    # Fan-out and fan-in as asked (the fix-up for unreached neurons only adds synapses).
    inter, command, motor = (np.array(layer) for layer in wiring.layers)
    assert np.all(np.count_nonzero(wiring.sensory_adjacency, axis=1) >= 3)
    assert np.all(np.count_nonzero(wiring.adjacency[np.ix_(inter, command)], axis=1) >= 2)
    assert np.all(np.count_nonzero(wiring.adjacency[np.ix_(command, motor)], axis=0) >= 2)


@pytest.mark.parametrize("units, output_size", [(24, None), (10, 3), (64, 20), (5, 2)])
@pytest.mark.parametrize("seed", [0, 1])
def test_autoncp_structure(units, output_size, seed):
    wiring = create_wiring("autoncp", 12, units, output_size=output_size, seed=seed)
    expected_out = max(1, round(0.3 * units)) if output_size is None else output_size
    assert wiring.output_size == expected_out
    command = max(int(0.4 * (units - expected_out)), 1)
    assert tuple(len(layer) for layer in wiring.layers) == (units - expected_out - command, command, expected_out)
    _check_ncp_structure(wiring)


@pytest.mark.parametrize("sparsity", [0.1, 0.5, 0.9])
def test_autoncp_sparsity_level(sparsity):
    wiring = create_wiring("autoncp", 40, 100, output_size=10, sparsity=sparsity)
    inter = list(wiring.layers[0])
    # Each input reaches about (1 - sparsity) of the inter neurons (plus the fix-up for unreached ones).
    density = np.mean(wiring.sensory_adjacency[:, inter] != 0)
    assert (1 - sparsity) * 0.9 - 0.03 <= density <= (1 - sparsity) + 0.1


@pytest.mark.parametrize(
    "kind, features, units, options, match",
    [
        ("dense", 4, 8, {}, "unknown wiring 'dense'; choose one of: autoncp, fully_connected, ncp, random"),
        ("random", 4, 0, {}, "must be positive"),
        ("random", 0, 8, {}, "must be positive"),
        ("random", 4, 8, dict(sparsity=1.0), r"sparsity must be in \[0, 1\)"),
        ("random", 4, 8, dict(sparsity=-0.1), r"sparsity must be in \[0, 1\)"),
        ("random", 4, 8, dict(output_size=9), "output_size must be between 1 and units = 8"),
        ("fully_connected", 4, 8, dict(output_size=0), "output_size must be between 1 and units = 8"),
        ("fully_connected", 4, 8, dict(sparsity=0.5), "sparsity"),
        ("autoncp", 4, 8, dict(output_size=6), "output_size must be between 1 and units - 3 = 5"),
        ("autoncp", 4, 8, dict(sparsity=0.95), "sparsity must be between 0.1 and 0.9"),
        ("ncp", 4, 16, NCP_OPTIONS, "units=16 but inter \\+ command \\+ motor = 15"),
        ("ncp", 4, 15, {**NCP_OPTIONS, "sensory_fanout": 8}, "sensory_fanout=8 must be between 1 and 7"),
        ("ncp", 4, 15, {**NCP_OPTIONS, "motor_fanin": 0}, "motor_fanin=0 must be between 1 and 5"),
        ("ncp", 4, 15, {k: v for k, v in NCP_OPTIONS.items() if k != "inter_fanout"}, "inter_fanout"),
    ],
)
def test_bad_options_raise(kind, features, units, options, match):
    with pytest.raises(HeadError, match=match):
        create_wiring(kind, features, units, **options)


def test_layer_input_mask_of_an_ncp():
    wiring = create_wiring("ncp", 6, 15, **NCP_OPTIONS)
    inter, command, motor = wiring.layers
    assert wiring.layer_input_mask(0).shape == (6, len(inter))
    assert wiring.layer_input_mask(1).shape == (len(inter), len(command))
    mask = wiring.layer_input_mask(2)
    assert mask.shape == (len(command), len(motor)) and set(np.unique(mask)) <= {0.0, 1.0}
    np.testing.assert_array_equal(mask, wiring.adjacency[np.ix_(command, motor)] != 0)


def _ncps_wirings():
    pytest.importorskip("ncps")
    import ncps.wirings

    return ncps.wirings


@pytest.mark.parametrize("kind", ["FullyConnected", "Random", "NCP", "AutoNCP"])
def test_from_ncps_wiring_copies_the_graph(kind):
    wirings = _ncps_wirings()
    make = {
        "FullyConnected": lambda: wirings.FullyConnected(10, output_dim=4),
        "Random": lambda: wirings.Random(10, sparsity_level=0.5),
        "NCP": lambda: wirings.NCP(7, 5, 3, 3, 2, 4, 2),
        "AutoNCP": lambda: wirings.AutoNCP(20, 5),
    }[kind]
    theirs = make()
    theirs.build(6)
    ours = from_ncps_wiring(theirs)
    np.testing.assert_array_equal(ours.adjacency, theirs.adjacency_matrix)
    np.testing.assert_array_equal(ours.sensory_adjacency, theirs.sensory_adjacency_matrix)
    assert ours.output_size == theirs.output_dim and ours.units == theirs.units and ours.in_features == 6
    if kind in ("NCP", "AutoNCP"):
        assert ours.layers == tuple(tuple(theirs.get_neurons_of_layer(k)) for k in range(3))
        assert not np.any((ours.adjacency != 0) & ~_allowed_ncp(ours))

