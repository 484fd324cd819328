"""The memory monitor reads the NVML device that is torch's device, not NVML's device of the same
number: NVML counts every GPU of the machine, torch only those CUDA_VISIBLE_DEVICES shows it.

There is no GPU here, so the driver is played by :class:`FakeNvml`, a four-GPU machine answering
the pynvml calls the monitor makes (their names and parameters checked against the installed
pynvml), and torch's CUDA queries are stubbed with the fields a real ``_CudaDeviceProperties`` has
(``uuid``; ``pci_domain_id``/``pci_bus_id``/``pci_device_id``). That is the mechanism: torch's
logical index 0 under ``CUDA_VISIBLE_DEVICES=3`` is NVML's device 3."""
from __future__ import annotations

import inspect
import sys
import types
from dataclasses import dataclass

import pytest
import torch

from wan_nb.protocol import monitor

MB = 1024 * 1024


@dataclass
class Card:
    name: str
    uuid: str
    pci: tuple[int, int, int]      # domain, bus, device
    used_mb: int
    total_mb: int = 16384

    @property
    def bus_id(self) -> str:
        return "{:08X}:{:02X}:{:02X}.0".format(*self.pci)


CARDS = [Card("Card A", "GPU-aaaa1111-0000-0000-0000-000000000000", (0, 0x17, 0), 100),
         Card("Card B", "GPU-bbbb2222-0000-0000-0000-000000000000", (0, 0x3B, 0), 2000),
         Card("Card C", "GPU-cccc3333-0000-0000-0000-000000000000", (0, 0x86, 0), 7000),
         Card("Card D", "GPU-dddd4444-0000-0000-0000-000000000000", (0, 0xAF, 0), 15000)]


class FakeNvml(types.ModuleType):
    """pynvml's calls as a machine with CARDS (in NVML's PCI order) answers them."""

    class NVMLError(Exception):
        pass

    def __init__(self) -> None:
        super().__init__("pynvml")

    def nvmlInit(self):
        pass

    def nvmlDeviceGetCount(self):
        return len(CARDS)

    def nvmlDeviceGetHandleByIndex(self, index):
        if not 0 <= index < len(CARDS):
            raise self.NVMLError("Invalid Argument")
        return CARDS[index]

    def nvmlDeviceGetHandleByUUID(self, uuid):
        for card in CARDS:
            if card.uuid == uuid:
                return card
        raise self.NVMLError("Not Found")

    def nvmlDeviceGetHandleByPciBusId(self, pciBusId):
        for card in CARDS:
            if card.bus_id == pciBusId.upper():
                return card
        raise self.NVMLError("Not Found")

    def nvmlDeviceGetUUID(self, handle):
        return handle.uuid

    def nvmlDeviceGetName(self, handle):
        return handle.name

    def nvmlDeviceGetMemoryInfo(self, handle, version=None):
        return types.SimpleNamespace(total=handle.total_mb * MB, used=handle.used_mb * MB,
                                     free=(handle.total_mb - handle.used_mb) * MB)


def test_the_fake_answers_the_real_pynvml_calls():
    import pynvml

    fake = FakeNvml()
    for name, member in vars(FakeNvml).items():
        if name.startswith("nvml"):
            real = inspect.signature(getattr(pynvml, name))
            ours = inspect.signature(getattr(fake, name))
            assert list(real.parameters) == list(ours.parameters), name


@pytest.fixture
def machine(monkeypatch):
    """The fake driver in place of pynvml, a fresh NVML state, no CUDA_VISIBLE_DEVICES."""
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml())
    monkeypatch.setattr(monitor, "_nvml", monitor._Nvml())
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return monkeypatch


def _torch_sees(monkeypatch, visible: list[Card], current: int = 0, *, identity: bool = True):
    """Stands in for torch with CUDA running on the cards it is shown (logical 0, 1, ...)."""
    def properties(index):
        card = visible[index]
        fields = {"name": card.name, "total_memory": card.total_mb * MB}
        if identity:   # torch 2.13: uuid without NVML's "GPU-" prefix, and the PCI location
            fields.update(uuid=card.uuid[4:], pci_domain_id=card.pci[0], pci_bus_id=card.pci[1],
                          pci_device_id=card.pci[2])
        return types.SimpleNamespace(**fields)

    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: current)
    monkeypatch.setattr(torch.cuda, "get_device_properties", properties)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda index=None: 10 * MB * (1 + (index or 0)))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda index=None: 20 * MB * (1 + (index or 0)))


def test_a_ray_worker_with_cuda_visible_devices_3_reads_card_3(machine):
    machine.setenv("CUDA_VISIBLE_DEVICES", "3")
    _torch_sees(machine, [CARDS[3]])
    reading = monitor.sample()
    assert reading["device_name"] == "Card D" and reading["used_mb"] == 15000
    assert reading["warning_level"] == "critical"   # 15000 / 16384: what card 0 (100 MB) would hide


def test_device_cuda_1_reads_the_second_card_not_the_current_one(machine):
    _torch_sees(machine, CARDS, current=0)
    assert monitor.sample("cuda:1")["device_name"] == "Card B"
    assert monitor.sample("cuda:1")["allocated_mb"] == 20.0    # torch's own figures of that device too
    assert monitor.sample()["device_name"] == "Card A"
    assert monitor.sample("cpu")["source"] == "ram"             # a CPU generator reports RAM


def test_remapped_and_reordered_visible_devices(machine):
    machine.setenv("CUDA_VISIBLE_DEVICES", "2,0")
    _torch_sees(machine, [CARDS[2], CARDS[0]])
    assert monitor.sample("cuda:0")["device_name"] == "Card C"
    assert monitor.sample("cuda:1")["device_name"] == "Card A"


def test_without_torch_identity_the_visible_list_maps_the_index(machine):
    """A torch without uuid / PCI fields, or a process with no CUDA yet (the Jupyter server)."""
    machine.setenv("CUDA_VISIBLE_DEVICES", "2,0")
    _torch_sees(machine, [CARDS[2], CARDS[0]], identity=False)
    assert monitor.sample("cuda:1")["device_name"] == "Card A"
    machine.setattr(torch.cuda, "is_initialized", lambda: False)
    assert monitor.sample()["device_name"] == "Card C"


def test_uuid_entries_and_prefixes_in_cuda_visible_devices(machine):
    machine.setattr(torch.cuda, "is_initialized", lambda: False)
    machine.setenv("CUDA_VISIBLE_DEVICES", "GPU-bbbb2222")          # CUDA accepts a unique prefix
    assert monitor.sample()["device_name"] == "Card B"
    machine.setenv("CUDA_VISIBLE_DEVICES", CARDS[3].uuid)
    assert monitor.sample()["device_name"] == "Card D"


def test_a_device_torch_does_not_have_falls_back_to_ram(machine):
    machine.setattr(torch.cuda, "is_initialized", lambda: False)
    machine.setenv("CUDA_VISIBLE_DEVICES", "1,bogus,2")    # CUDA stops at the invalid entry
    assert monitor.visible_entries("1,bogus,2") == ["1"]
    assert monitor.sample("cuda:1")["source"] == "ram"
    assert monitor.sample("cuda:0")["device_name"] == "Card B"
