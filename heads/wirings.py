"""Wirings: which neuron feeds which, for the liquid heads (CfC, LTC).

A wiring is a fixed graph over ``units`` neurons plus the ``in_features`` (D) sensory inputs:

- ``adjacency``         (N, N) int8, ``[src, dest]`` in {-1, 0, +1}: 0 = no synapse, the sign is the
  synapse's initial polarity (its reversal potential in an LTC).
- ``sensory_adjacency`` (D, N) int8, the same for input feature -> neuron.
- ``layers``: neuron indices per layer, from the input side to the output side. A fully connected
  or random wiring is one layer; an NCP is (inter, command, motor).
- ``output_size``: the outputs are neurons ``0 .. output_size - 1`` (for an NCP, the motor neurons),
  the convention of ncps, so its wirings convert one to one.

Heads multiply every weight by the 0/1 mask of its wiring, so a synapse the wiring leaves out
stays exactly zero and receives no gradient.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from heads._registry import HeadError


@dataclass(frozen=True, eq=False)
class Wiring:
    """A built wiring (see the module docstring for the fields)."""

    adjacency: np.ndarray
    sensory_adjacency: np.ndarray
    layers: tuple[tuple[int, ...], ...]
    output_size: int

    def __post_init__(self) -> None:
        units = self.adjacency.shape[0]
        assert self.adjacency.shape == (units, units)
        assert self.sensory_adjacency.shape[1] == units
        assert sorted(i for layer in self.layers for i in layer) == list(range(units))
        assert 0 < self.output_size <= units

    @property
    def units(self) -> int:
        return self.adjacency.shape[0]

    @property
    def in_features(self) -> int:
        return self.sensory_adjacency.shape[0]

    @property
    def synapse_count(self) -> int:
        return int(np.count_nonzero(self.adjacency))

    @property
    def sensory_synapse_count(self) -> int:
        return int(np.count_nonzero(self.sensory_adjacency))

    def layer_input_mask(self, layer: int) -> np.ndarray:
        """0/1 mask (inputs of layer, neurons of layer) for a layer-by-layer cell (wired CfC).

        The inputs of layer 0 are the sensory features; of layer k the neurons of layer k - 1.
        """
        dest = list(self.layers[layer])
        if layer == 0:
            block = self.sensory_adjacency[:, dest]
        else:
            block = self.adjacency[np.ix_(list(self.layers[layer - 1]), dest)]
        return (block != 0).astype(np.float32)


_KINDS: dict[str, Callable[..., Wiring]] = {}


def _register(name: str):
    def decorate(fn: Callable[..., Wiring]) -> Callable[..., Wiring]:
        _KINDS[name] = fn
        return fn

    return decorate


def list_wirings() -> list[str]:
    """Names accepted by ``create_wiring`` (and by the ``wiring=`` option of cfc and ltc)."""
    return sorted(_KINDS)


def create_wiring(kind: str, in_features: int, units: int, **kwargs) -> Wiring:
    """Build a wiring of ``kind`` for ``in_features`` inputs and ``units`` neurons.

    Options (all keyword): ``output_size`` (default: all units, or 30 % for NCPs), ``sparsity``
    (fraction of synapses left out, ``random`` and ``autoncp``), ``seed``.
    """
    try:
        make = _KINDS[kind]
    except KeyError:
        raise HeadError(f"unknown wiring {kind!r}; choose one of: {', '.join(list_wirings())}") from None
    if units < 1 or in_features < 1:
        raise HeadError(f"wiring {kind!r}: units and in_features must be positive, got {units} and {in_features}")
    try:
        return make(in_features, units, **kwargs)
    except TypeError as exc:
        raise HeadError(f"wiring {kind!r}: {exc}") from None


def resolve_wiring(head: str, in_features: int, hidden_size: int | None, wiring: str | Wiring | None,
                   wiring_kwargs: dict | None, default_units: int = 64) -> Wiring | None:
    """The Wiring a head's ``hidden_size`` / ``wiring`` / ``wiring_kwargs`` options ask for.

    ``wiring`` is None (no wiring: the head is dense; returns None), a kind of ``list_wirings()``
    built with ``wiring_kwargs`` for ``in_features`` inputs and ``hidden_size`` (default
    ``default_units``) neurons, or a built Wiring, which must fit ``in_features`` and ``hidden_size``.
    Errors name ``head``.
    """
    if hidden_size is not None and (isinstance(hidden_size, bool) or not isinstance(hidden_size, int)
                                    or hidden_size < 1):
        raise HeadError(f"{head}: hidden_size must be a positive integer, got {hidden_size!r}")
    if wiring_kwargs is not None and not isinstance(wiring_kwargs, dict):
        raise HeadError(f"{head}: wiring_kwargs must be a dict or None, got {wiring_kwargs!r}")
    if wiring is None:
        if wiring_kwargs:
            raise HeadError(f"{head}: wiring_kwargs needs wiring= (one of: {', '.join(list_wirings())})")
        return None
    if isinstance(wiring, Wiring):
        if wiring_kwargs:
            raise HeadError(f"{head}: wiring_kwargs apply to a wiring kind, not to a built Wiring")
        if wiring.in_features != in_features:
            raise HeadError(f"{head}: the wiring is built for {wiring.in_features} inputs, not in_features={in_features}")
        if hidden_size is not None and hidden_size != wiring.units:
            raise HeadError(f"{head}: hidden_size={hidden_size} but the wiring has {wiring.units} units")
        return wiring
    if not isinstance(wiring, str):
        raise HeadError(f"{head}: wiring must be a Wiring, None or one of: {', '.join(list_wirings())}; got {wiring!r}")
    units = default_units if hidden_size is None else hidden_size
    return create_wiring(wiring, in_features, units, **(wiring_kwargs or {}))


def _polarity(rng: np.random.Generator, shape, p_excitatory: float) -> np.ndarray:
    """Random signs, +1 with probability ``p_excitatory``."""
    return np.where(rng.random(shape) < p_excitatory, 1, -1).astype(np.int8)


@_register("fully_connected")
def fully_connected(in_features: int, units: int, output_size: int | None = None, seed: int = 1111) -> Wiring:
    """Every input to every neuron, every neuron to every neuron (2/3 excitatory)."""
    rng = np.random.default_rng(seed)
    return Wiring(
        adjacency=_polarity(rng, (units, units), 2 / 3),
        sensory_adjacency=_polarity(rng, (in_features, units), 2 / 3),
        layers=(tuple(range(units)),),
        output_size=units if output_size is None else _check_output(output_size, units),
    )


@_register("random")
def random_sparse(
    in_features: int, units: int, output_size: int | None = None, sparsity: float = 0.5, seed: int = 1111
) -> Wiring:
    """A random ``1 - sparsity`` fraction of all possible synapses (2/3 excitatory)."""
    if not 0.0 <= sparsity < 1.0:
        raise HeadError(f"wiring 'random': sparsity must be in [0, 1), got {sparsity}")
    rng = np.random.default_rng(seed)

    def sample(shape) -> np.ndarray:
        keep = np.zeros(shape[0] * shape[1], dtype=bool)
        keep[rng.choice(keep.size, size=round(keep.size * (1 - sparsity)), replace=False)] = True
        return (_polarity(rng, shape, 2 / 3) * keep.reshape(shape)).astype(np.int8)

    return Wiring(
        adjacency=sample((units, units)),
        sensory_adjacency=sample((in_features, units)),
        layers=(tuple(range(units)),),
        output_size=units if output_size is None else _check_output(output_size, units),
    )


@_register("ncp")
def ncp(
    in_features: int,
    units: int | None = None,
    *,
    inter_neurons: int,
    command_neurons: int,
    motor_neurons: int,
    sensory_fanout: int,
    inter_fanout: int,
    recurrent_command_synapses: int,
    motor_fanin: int,
    seed: int = 22222,
) -> Wiring:
    """A Neural Circuit Policy: sensory -> inter -> command (recurrent) -> motor, sparse fan-in/out.

    Neuron indices are motor first, then command, then inter (so outputs are ``0 .. motor - 1``).
    Every neuron of a layer is reachable: a neuron that no random fan-out reached gets inputs of
    its own.
    """
    total = inter_neurons + command_neurons + motor_neurons
    if units is not None and units != total:
        raise HeadError(f"wiring 'ncp': units={units} but inter + command + motor = {total}")
    for name, fan, pool in (
        ("sensory_fanout", sensory_fanout, inter_neurons),
        ("inter_fanout", inter_fanout, command_neurons),
        ("motor_fanin", motor_fanin, command_neurons),
    ):
        if not 1 <= fan <= pool:
            raise HeadError(f"wiring 'ncp': {name}={fan} must be between 1 and {pool}")
    rng = np.random.default_rng(seed)
    motor = np.arange(motor_neurons)
    command = np.arange(motor_neurons, motor_neurons + command_neurons)
    inter = np.arange(motor_neurons + command_neurons, total)
    adjacency = np.zeros((total, total), dtype=np.int8)
    sensory = np.zeros((in_features, total), dtype=np.int8)

    def fan_out(matrix: np.ndarray, sources: np.ndarray, targets: np.ndarray, fanout: int) -> None:
        """Each source connects to ``fanout`` random targets; unreached targets get average fan-in."""
        for src in sources:
            dest = rng.choice(targets, size=fanout, replace=False)
            matrix[src, dest] = _polarity(rng, fanout, 0.5)
        reached = np.any(matrix[np.ix_(sources, targets)] != 0, axis=0)
        fanin = int(np.clip(len(sources) * fanout // len(targets), 1, len(sources)))
        for dest in targets[~reached]:
            src = rng.choice(sources, size=fanin, replace=False)
            matrix[src, dest] = _polarity(rng, fanin, 0.5)

    fan_out(sensory, np.arange(in_features), inter, sensory_fanout)
    fan_out(adjacency, inter, command, inter_fanout)
    for _ in range(recurrent_command_synapses):
        adjacency[rng.choice(command), rng.choice(command)] = _polarity(rng, 1, 0.5)[0]
    # Command -> motor is drawn per motor neuron (fan-in), then unreached command neurons fan out.
    for dest in motor:
        src = rng.choice(command, size=motor_fanin, replace=False)
        adjacency[src, dest] = _polarity(rng, motor_fanin, 0.5)
    unreached = command[~np.any(adjacency[np.ix_(command, motor)] != 0, axis=1)]
    fanout = int(np.clip(motor_neurons * motor_fanin // command_neurons, 1, motor_neurons))
    for src in unreached:
        dest = rng.choice(motor, size=fanout, replace=False)
        adjacency[src, dest] = _polarity(rng, fanout, 0.5)

    return Wiring(
        adjacency=adjacency,
        sensory_adjacency=sensory,
        layers=(tuple(inter.tolist()), tuple(command.tolist()), tuple(motor.tolist())),
        output_size=motor_neurons,
    )


@_register("autoncp")
def auto_ncp(
    in_features: int, units: int, output_size: int | None = None, sparsity: float = 0.5, seed: int = 22222
) -> Wiring:
    """An NCP sized from ``units`` and ``output_size`` alone (40 % of the rest are command neurons)."""
    if output_size is None:
        output_size = max(1, round(0.3 * units))
    if not 1 <= output_size < units - 2:
        raise HeadError(f"wiring 'autoncp': output_size must be between 1 and units - 3 = {units - 3}, got {output_size}")
    if not 0.1 <= sparsity <= 0.9:
        raise HeadError(f"wiring 'autoncp': sparsity must be between 0.1 and 0.9, got {sparsity}")
    density = 1.0 - sparsity
    command = max(int(0.4 * (units - output_size)), 1)
    inter = units - output_size - command
    return ncp(
        in_features,
        units,
        inter_neurons=inter,
        command_neurons=command,
        motor_neurons=output_size,
        sensory_fanout=max(int(inter * density), 1),
        inter_fanout=max(int(command * density), 1),
        recurrent_command_synapses=max(int(command * density * 2), 1),
        motor_fanin=max(int(command * density), 1),
        seed=seed,
    )


def _check_output(output_size: int, units: int) -> int:
    if not 1 <= output_size <= units:
        raise HeadError(f"output_size must be between 1 and units = {units}, got {output_size}")
    return output_size


def from_ncps_wiring(wiring) -> Wiring:
    """Our Wiring with the same graph as a built ncps wiring (read through its attributes)."""
    layers = tuple(tuple(int(i) for i in wiring.get_neurons_of_layer(k)) for k in range(wiring.num_layers))
    return Wiring(
        adjacency=np.asarray(wiring.adjacency_matrix, dtype=np.int8),
        sensory_adjacency=np.asarray(wiring.sensory_adjacency_matrix, dtype=np.int8),
        layers=layers,
        output_size=int(wiring.output_dim),
    )
