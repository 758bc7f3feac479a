"""preprocess.state_dict: safe reading of state dicts and the strict loader."""

from __future__ import annotations

from pathlib import Path

import pytest

from preprocess.state_dict import WeightsError, load_strict, read_state_dict


def test_read_state_dict_unwraps_and_reads_safely(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    a, b = torch.ones(2), torch.zeros(3)
    save_file({"a": a}, str(tmp_path / "w.safetensors"))
    assert torch.equal(read_state_dict(tmp_path / "w.safetensors")["a"], a)
    wrapped = {"epoch": 3, "state_dict": {"module.a": a, "module.b": b, "step": 7}}
    torch.save(wrapped, tmp_path / "wrapped.pth")
    state = read_state_dict(tmp_path / "wrapped.pth")
    assert set(state) == {"a", "b"} and torch.equal(state["b"], b)
    torch.save({"module.a": a, "b": b}, tmp_path / "mixed.pth")  # not a DataParallel dump
    assert set(read_state_dict(tmp_path / "mixed.pth")) == {"module.a", "b"}
    torch.save(torch.nn.Linear(2, 2), tmp_path / "pickled_module.pth")  # needs code to load
    with pytest.raises(Exception, match=r"[Ww]eights only load failed"):
        read_state_dict(tmp_path / "pickled_module.pth")
    torch.save([a], tmp_path / "list.pth")
    with pytest.raises(WeightsError, match="expected a dict of tensors, got list"):
        read_state_dict(tmp_path / "list.pth")


def test_load_strict_names_every_kind_of_difference() -> None:
    torch = pytest.importorskip("torch")
    net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Linear(3, 1))
    good = {k: torch.full_like(v, 0.5) for k, v in net.state_dict().items()}
    assert load_strict(net, good, "tiny") is net
    assert torch.equal(net[0].weight, torch.full((3, 2), 0.5))
    bad = dict(good, **{"2.weight": torch.zeros(1), "0.weight": torch.zeros(3, 5)})
    del bad["1.bias"]
    with pytest.raises(WeightsError) as err:
        load_strict(net, bad, "tiny weights")
    message = str(err.value)
    assert message.startswith("tiny weights does not match the configured architecture")
    assert "1 missing keys ['1.bias']" in message
    assert "1 unexpected keys ['2.weight']" in message
    assert "0.weight: (3, 5) in the weights, (3, 2) here" in message
    with torch.device("meta"):
        empty = torch.nn.Linear(2, 3)
    real = {"weight": torch.ones(3, 2), "bias": torch.ones(3)}
    assert load_strict(empty, real, "meta", assign=True).weight.device.type == "cpu"
