from __future__ import annotations

from pathlib import Path

from prometheus_client.metrics_core import Metric
from pytest import approx

from agent.collectors.catalog import DiskstatsSettings
from agent.collectors.diskstats import DiskstatsCollector, parse_diskstats, parse_udev
from tests.golden import FIXTURES, assert_golden

DISKSTATS = FIXTURES / "diskstats"
DEFAULT_EXCLUDE = DiskstatsSettings().device_exclude


def collector(proc: str = "proc", include: str | None = None,
              exclude: str | None = DEFAULT_EXCLUDE) -> DiskstatsCollector:
    return DiskstatsCollector(DISKSTATS / proc, DISKSTATS / "sys", include, exclude,
                              udev_data=DISKSTATS / "udev")


def samples(families: list[Metric], name: str) -> dict[str, float]:
    """device label -> value of the sample called name."""
    return {s.labels["device"]: s.value
            for f in families for s in f.samples if s.name == name}


def test_parse_modern_kernel_line_has_discard_and_flush_fields() -> None:
    disks = {d.device: d for d in parse_diskstats((DISKSTATS / "proc/diskstats").read_text())}
    sda = disks["sda"]
    assert (sda.major, sda.minor) == (8, 0)
    assert len(sda.stats) == 17
    assert sda.stats[:3] == (1201554, 263823, 118231548)
    assert sda.stats[-2:] == (402213, 315268)
    assert len(disks) == 10


def test_parse_kernel_3_10_line_has_eleven_fields() -> None:
    disks = parse_diskstats((DISKSTATS / "proc-3.10/diskstats").read_text())
    assert [d.device for d in disks] == ["sda", "sda1", "dm-0", "fd0"]
    assert all(len(d.stats) == 11 for d in disks)


def test_parse_udev_keeps_only_properties() -> None:
    props = parse_udev("S:disk/by-id/x\nW:3\nE:ID_MODEL=Some Disk\nE:ID_EMPTY=\nE:A=b=c\nG:x\n")
    assert props == {"ID_MODEL": "Some Disk", "ID_EMPTY": "", "A": "b=c"}


def test_default_exclude_drops_partitions_and_loop_devices() -> None:
    c = collector()
    dropped = ("loop0", "sda1", "nvme0n1p1", "fd0", "zram0", "ram1")
    assert [d for d in dropped if not c.ignored(d)] == []
    assert [d for d in ("sda", "nvme0n1", "dm-0", "sr0", "zramx") if c.ignored(d)] == []


def test_include_filter() -> None:
    families = collector(include="^nvme", exclude=None).collect()
    assert set(samples(families, "node_disk_reads_completed_total")) == {"nvme0n1", "nvme0n1p1"}


def test_modern_values_and_units() -> None:
    families = collector().collect()
    assert set(samples(families, "node_disk_io_now")) == {"sda", "nvme0n1", "dm-0", "sr0", "sdb",
                                                          "vda"}
    assert samples(families, "node_disk_read_bytes_total")["sda"] == 118231548 * 512
    assert samples(families, "node_disk_written_bytes_total")["sda"] == 251920856 * 512
    assert samples(families, "node_disk_read_time_seconds_total")["sda"] == 312.771
    assert samples(families, "node_disk_io_now")["nvme0n1"] == 3
    assert samples(families, "node_disk_discarded_sectors_total")["sda"] == 64217960
    assert samples(families, "node_disk_flush_requests_total")["nvme0n1"] == 912553
    # ms * 0.001, the float node_exporter prints (315.26800000000003), not ms / 1000.
    flush_seconds = samples(families, "node_disk_flush_requests_time_seconds_total")["sda"]
    assert flush_seconds == 315268 * 0.001
    assert flush_seconds == approx(315.268)
    assert_golden(families, "diskstats")


def test_udev_properties() -> None:
    families = collector().collect()
    info = {s.labels["device"]: s.labels for f in families for s in f.samples
            if s.name == "node_disk_info"}
    assert info["sda"]["serial"] == "S3Z1NB0K123456A"
    assert info["sda"]["wwn"] == "0x5002538e40a1b2c3"
    assert info["nvme0n1"]["model"] == "Samsung SSD 970 EVO Plus 1TB"
    assert info["sr0"] == {"device": "sr0", "major": "11", "minor": "0", "path": "", "wwn": "",
                           "model": "", "serial": "", "revision": "", "rotational": "0"}
    assert samples(families, "node_disk_ata_rotation_rate_rpm") == {"sda": 0}
    assert samples(families, "node_disk_ata_write_cache_enabled") == {"sda": 1}
    fs = [s.labels for f in families for s in f.samples if s.name == "node_disk_filesystem_info"]
    assert fs == [{"device": "dm-0", "type": "ext4", "usage": "filesystem",
                   "uuid": "0a1b2c3d-4e5f-6789-abcd-ef0123456789", "version": "1.0"}]
    assert set(samples(families, "node_disk_device_mapper_info")) == {"dm-0"}


def test_old_kernel_without_discard_fields_nor_udev() -> None:
    c = DiskstatsCollector(DISKSTATS / "proc-3.10", Path("/nonexistent/sys"), None,
                           DEFAULT_EXCLUDE, udev_data=Path("/nonexistent/udev"))
    families = c.collect()
    names = {f.name for f in families}
    assert "node_disk_io_time_weighted_seconds" in names
    assert not any(n.startswith(("node_disk_discard", "node_disk_flush")) for n in names)
    assert samples(families, "node_disk_io_time_weighted_seconds_total")["dm-0"] == 46440.3
    assert set(samples(families, "node_disk_info")) == {"sda", "dm-0"}
    assert_golden(families, "diskstats_3.10")


def info_labels() -> dict[str, dict[str, str]]:
    return {s.labels["device"]: s.labels for f in collector().collect() for s in f.samples
            if s.name == "node_disk_info"}


def test_serial_prefers_the_label_serial_then_short_then_full() -> None:
    info = info_labels()
    assert info["sdb"]["serial"] == "ZC11ABCD"  # SCSI_IDENT_SERIAL
    assert info["sda"]["serial"] == "S3Z1NB0K123456A"  # ID_SERIAL_SHORT
    assert info["vda"]["serial"] == "virtio-disk-0001"  # ID_SERIAL only


def test_rotational_needs_every_queue_attribute_as_procfs_reads_them() -> None:
    rotation = {device: labels["rotational"] for device, labels in info_labels().items()}
    assert rotation == {"sda": "0", "nvme0n1": "0", "sdb": "1", "vda": "1",
                        # rotational is 1 but a queue attribute is missing: procfs gives up
                        "dm-0": "0", "sr0": "0"}


def test_device_mapper_backing_devices_sorted() -> None:
    backing = [s.labels for f in collector().collect() for s in f.samples
               if s.name == "node_disk_device_mapper_backing_device_info"]
    assert backing == [{"device": "dm-0", "backing_device": "nvme0n1p1"},
                       {"device": "dm-0", "backing_device": "sda2"}]


def test_udev_file_without_filesystem_type_has_no_filesystem_info() -> None:
    fs = {s.labels["device"] for f in collector().collect() for s in f.samples
          if s.name == "node_disk_filesystem_info"}
    assert fs == {"dm-0"}  # vda's ID_FS_TYPE is empty


def test_identity_follows_a_rewritten_udev_file_and_rotational_a_written_queue(
        tmp_path: Path) -> None:
    """udev properties and the queue check are kept between cycles: a replaced udev database
    file and a changed rotational attribute still show on the next collect."""
    import shutil

    for part in ("proc", "sys", "udev"):
        shutil.copytree(DISKSTATS / part, tmp_path / part, symlinks=True)
    c = DiskstatsCollector(tmp_path / "proc", tmp_path / "sys", None, DEFAULT_EXCLUDE,
                           udev_data=tmp_path / "udev")

    def info() -> dict[str, dict[str, str]]:
        return {s.labels["device"]: s.labels for f in c.collect() for s in f.samples
                if s.name == "node_disk_info"}

    assert info()["sdb"]["rotational"] == "1"
    udev = tmp_path / "udev" / "b8:16"
    replacement = tmp_path / "udev" / "new"
    replacement.write_text(udev.read_text().replace("ZC11ABCD", "ZC99WXYZ"))
    replacement.replace(udev)  # as udev writes it: a new file renamed over the old one
    (tmp_path / "sys/block/sdb/queue/rotational").write_text("0\n")
    after = info()["sdb"]
    assert (after["serial"], after["rotational"]) == ("ZC99WXYZ", "0")
    udev.unlink()
    assert info()["sdb"]["serial"] == ""
