"""What the simulated I04 beamline is made of: its IOCs and the records each serves.

This is the beamline's substitutions file, written as data: every IOC is a list
of `.db` files (under `sim/db/`) loaded with macros, as a real IOC's startup
script would `dbLoadRecords` templates. Device names and suffixes are the real
Diamond ones (see the MX beamline PV reference); where no public source gave a
name, the name is marked "est." in a comment.

Macro values may refer to `$(P)` (the sim's PV prefix) and `$(IOC)` (the IOC's
own name): both are added to every load by `layout.py`, and EPICS expands
macros inside macro values.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

CONTROL_NAMESPACE = "BL04I-SIM"  # the sim-control records: $(P)BL04I-SIM:FAULT:...
CHATTER_GAUGE = "BL04I-VA-GAUGE-04"
SPIKE_GAUGE = "BL04I-VA-GAUGE-06"
SIM_MARKERS = (":SIM:", f"{CONTROL_NAMESPACE}:", "SR-SIM-01:")  # names of sim helpers


@dataclass(frozen=True)
class DbLoad:
    """One `dbLoadRecords(db, macros)` line."""

    db: str
    macros: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class IocDefinition:
    """One IOC process of the beamline, before ports and prefix are known."""

    name: str  # short name used on the command line: machine, frontend...
    ioc: str  # the IOC's own name, prefix of its HEARTBEAT PV
    title: str
    offset: int  # port = base_port + offset
    loads: tuple[DbLoad, ...]
    can_go_down: bool = True  # a target of the ioc-down fault
    pva: bool = False  # also serves PVAccess (QSRV of pvxs), on the sim's PVA port


def is_sim_helper(pv: str) -> bool:
    """True for records that only drive the simulation (fault flags, state machines)."""
    return any(marker in pv for marker in SIM_MARKERS)


# --- template helpers ------------------------------------------------------------------


def _num(x: float) -> str:
    return f"{x:.6g}"


def gauge(dev: str, base: float, *, faultp: float = 5e-6, high: float = 1e-7,
          hihi: float = 5e-7, spike: bool = False, chatter: bool = False) -> DbLoad:
    macros = {"DEV": dev, "BASE": _num(base), "FAULTP": _num(faultp), "HIGH": _num(high),
              "HIHI": _num(hihi)}
    if spike:
        macros["SPIKE"] = "$(P)$(IOC):SIM:SPIKE"
    if chatter:
        macros["CHATTER"] = "$(P)$(IOC):SIM:CHATTER"
    return DbLoad("gauge.db", macros)


def valve(dev: str, interlock_gauge: str) -> DbLoad:
    return DbLoad("valve.db", {"DEV": dev, "ILK": f"$(P){interlock_gauge}:P"})


def shutter(dev: str, interlock_gauge: str) -> DbLoad:
    return DbLoad("shutter.db", {"DEV": dev, "ILK": f"$(P){interlock_gauge}:P"})


def setting(name: str, val: float, egu: str = "", prec: int = 3, desc: str = "") -> DbLoad:
    macros = {"NAME": name, "VAL": _num(val), "EGU": egu, "PREC": str(prec)}
    if desc:
        macros["DESC"] = desc
    return DbLoad("setting.db", macros)


def bit(name: str, val: int, znam: str, onam: str, *, zsv: str = "NO_ALARM",
        osv: str = "NO_ALARM", desc: str = "") -> DbLoad:
    macros = {"NAME": name, "VAL": str(val), "ZNAM": znam, "ONAM": onam, "ZSV": zsv,
              "OSV": osv}
    if desc:
        macros["DESC"] = desc
    return DbLoad("bit.db", macros)


def integer(name: str, val: int, *, desc: str = "", low: tuple[float, str] | None = None,
            high: tuple[float, str] | None = None) -> DbLoad:
    macros = {"NAME": name, "VAL": str(val)}
    if desc:
        macros["DESC"] = desc
    for key, sev_key, level in (("LOW", "LSV", low), ("HIGH", "HSV", high)):
        if level is not None:
            macros[key], macros[sev_key] = _num(level[0]), level[1]
    return DbLoad("integer.db", macros)


def reading(name: str, ofs: float = 0.0, *, gain: float = 0.0, beam: str | None = None,
            rnoise: float = 0.0, anoise: float = 0.0, bnoise: float = 0.0, egu: str = "",
            prec: int = 3, scan: str = "1 second", desc: str = "",
            high: tuple[float, str] | None = None, hihi: tuple[float, str] | None = None,
            low: tuple[float, str] | None = None, lolo: tuple[float, str] | None = None,
            ) -> DbLoad:
    """A noisy reading; `beam` is "stored", "beam" or "sample" (see simlink.db)."""
    macros = {"NAME": name, "OFS": _num(ofs), "GAIN": _num(gain), "RNOISE": _num(rnoise),
              "ANOISE": _num(anoise), "BNOISE": _num(bnoise), "EGU": egu, "PREC": str(prec),
              "SCAN": scan}
    if beam is not None:
        macros["BEAM"] = f"$(P)$(IOC):SIM:{beam.upper()}"
    if desc:
        macros["DESC"] = desc
    for key, sev_key, level in (("HIHI", "HHSV", hihi), ("HIGH", "HSV", high),
                                ("LOW", "LSV", low), ("LOLO", "LLSV", lolo)):
        if level is not None:
            macros[key], macros[sev_key] = _num(level[0]), level[1]
    return DbLoad("reading.db", macros)


def message(name: str, flag: str, on: str, off: str = "", desc: str = "") -> DbLoad:
    macros = {"NAME": name, "FLAG": flag, "ON": on, "OFF": off}
    if desc:
        macros["DESC"] = desc
    return DbLoad("message.db", macros)


def _xy_position(dev: str, beam: str) -> list[DbLoad]:
    """An XBPM's beam position: ~0.3 um noise with beam, meaningless without it."""
    return [reading(f"{dev}:{axis}", beam=beam, anoise=0.3, bnoise=80, egu="um", prec=2,
                    high=(5, "MINOR"), hihi=(20, "MAJOR"), low=(-5, "MINOR"),
                    lolo=(-20, "MAJOR"), desc=f"Beam position {axis}")
            for axis in ("X", "Y")]


MINOR, MAJOR = "MINOR", "MAJOR"

# --- the IOCs ------------------------------------------------------------------------


def _machine() -> IocDefinition:
    loads = [
        DbLoad("machine.db"),
        message("CS-CS-MSTAT-01:MESS01", flag="$(P)$(IOC):SIM:DUMP",
                on="Beam lost - machine investigating", off="User run: top-up every 10 min",
                desc="Operator message 1"),
        reading("SR04I-MO-SERVC-01:CURRGAPD", 6.234, anoise=0.0008, egu="mm", prec=4,
                desc="ID gap readback"),
        setting("SR04I-MO-SERVC-01:BLGAPMTR", 6.234, "mm", 4, desc="ID gap demand"),
    ]
    return IocDefinition("machine", "SR-CS-IOC-01", "machine: ring current, mode, top-up, ID",
                         0, tuple(loads))


def _frontend() -> IocDefinition:
    gauges = {"FE04I-VA-GAUGE-01": 2.1e-9, "FE04I-VA-GAUGE-02": 1.4e-9,
              "FE04I-VA-GAUGE-03": 9e-10, "FE04I-VA-GAUGE-04": 1.1e-9,
              "FE04I-VA-GAUGE-05": 6e-10}
    pumps = {f"FE04I-VA-IONP-0{i}": b
             for i, b in enumerate((1.8e-9, 1.2e-9, 8e-10, 1e-9, 7e-10, 5e-10), start=1)}
    loads = [gauge(dev, base) for dev, base in {**gauges, **pumps}.items()]
    loads += [valve("FE04I-VA-VALVE-01", "FE04I-VA-GAUGE-02"),
              valve("FE04I-VA-VALVE-02", "FE04I-VA-GAUGE-04"),
              valve("FE04I-VA-VALVE-03", "FE04I-VA-GAUGE-05"),
              shutter("FE04I-PS-SHTR-01", "FE04I-VA-GAUGE-05"),  # the port shutter
              shutter("FE04I-PS-SHTR-02", "FE04I-VA-GAUGE-03")]
    # absorber/aperture temperatures and cooling water (est. names): heated by the
    # stored beam, upstream of the port shutter
    loads += [
        reading("FE04I-PS-ABSB-01:TEMP1", 24, gain=9, beam="stored", anoise=0.1, egu="degC",
                prec=2, high=(45, MINOR), hihi=(60, MAJOR), desc="Absorber temperature 1"),
        reading("FE04I-PS-ABSB-01:TEMP2", 23.5, gain=7, beam="stored", anoise=0.1, egu="degC",
                prec=2, high=(45, MINOR), hihi=(60, MAJOR), desc="Absorber temperature 2"),
        reading("FE04I-AL-APTR-01:TEMP1", 23, gain=6, beam="stored", anoise=0.1, egu="degC",
                prec=2, high=(45, MINOR), hihi=(60, MAJOR), desc="Fixed aperture temp"),
        reading("FE04I-CS-WATER-01:FLOW", 11.8, anoise=0.15, egu="l/min", prec=2,
                low=(8, MINOR), lolo=(5, MAJOR), desc="FE cooling water flow"),
    ]
    loads += _xy_position("FE04I-DI-XBPM-01", "stored") + _xy_position("FE04I-DI-XBPM-02",
                                                                       "stored")
    return IocDefinition("frontend", "FE04I-CS-IOC-01",
                         "front end: port shutters, FE vacuum, XBPMs", 1, tuple(loads))


def _bimorph_volts(n: int) -> float:
    """A plausible, fixed bimorph voltage profile over the electrodes."""
    return round(180 + 90 * math.sin(n * 0.7) + 25 * math.cos(n * 1.9), 1)


def _optics() -> IocDefinition:
    beam = "beam"
    loads = [DbLoad("optics.db")]
    dcm = "BL04I-MO-DCM-01"
    loads += [
        setting(f"{dcm}:ENERGY", 12.658, "keV", 4, desc="DCM energy"),
        setting(f"{dcm}:WAVELENGTH", 0.97947, "Angstrom", 5, desc="DCM wavelength"),
        setting(f"{dcm}:BRAGG", 8.9847, "deg", 4, desc="Bragg angle"),
        setting(f"{dcm}:OFFSET", 25.0, "mm", 3, desc="Fixed-exit offset"),
        setting(f"{dcm}:PERP", 12.655, "mm", 3, desc="Crystal gap"),
        setting(f"{dcm}:XTAL1:PITCH", 0.0, "mrad", 4),
        setting(f"{dcm}:XTAL1:ROLL", 0.012, "mrad", 4),
        setting(f"{dcm}:XTAL2:PITCH", -0.0215, "mrad", 4),
        setting(f"{dcm}:XTAL2:ROLL", 0.004, "mrad", 4),
        reading("BL04I-OP-DCM-01:WLRB", 0.97947, anoise=0.00002, egu="Angstrom", prec=5,
                desc="Wavelength readback"),
        # cryo-cooled Si(111): crystal 1 takes the heat load (unit not given in the
        # source; K est.)
        reading(f"{dcm}:TEMP1", 84, gain=4, beam=beam, anoise=0.1, egu="K", prec=2,
                high=(120, MINOR), hihi=(140, MAJOR), desc="Crystal 1 temperature"),
        reading(f"{dcm}:TEMP2", 83, gain=1.5, beam=beam, anoise=0.1, egu="K", prec=2,
                high=(120, MINOR), hihi=(140, MAJOR), desc="Crystal 2 temperature"),
        reading(f"{dcm}:TEMP3", 91, gain=1, beam=beam, anoise=0.1, egu="K", prec=2,
                high=(120, MINOR), hihi=(140, MAJOR), desc="Heater 1 temperature"),
        reading(f"{dcm}:TEMP4", 90.5, gain=1, beam=beam, anoise=0.1, egu="K", prec=2,
                high=(120, MINOR), hihi=(140, MAJOR), desc="Heater 2 temperature"),
        reading(f"{dcm}:TEMP5", 96, anoise=0.1, egu="K", prec=2, high=(120, MINOR),
                hihi=(140, MAJOR), desc="Backplate temperature"),
        reading(f"{dcm}:TEMP6", 295.2, anoise=0.05, egu="K", prec=2, high=(310, MINOR),
                hihi=(320, MAJOR), desc="Perp temperature"),
        reading(f"{dcm}:TEMP7", 294.6, anoise=0.05, egu="K", prec=2, high=(310, MINOR),
                hihi=(320, MAJOR), desc="Perp sub-assembly temp"),
        reading(f"{dcm}:FLOW", 2.4, anoise=0.03, egu="l/min", prec=2, low=(1.5, MINOR),
                lolo=(1.0, MAJOR), desc="DCM LN2 cooling flow"),  # est. name
    ]
    for mirror, pitch in (("BL04I-OP-VFM-01", 3.02), ("BL04I-OP-HFM-01", 2.98)):
        loads += [setting(f"{mirror}:PITCH", pitch, "mrad", 4),
                  setting(f"{mirror}:ROLL", 0.0, "mrad", 4),
                  setting(f"{mirror}:YAW", 0.0, "mrad", 4),
                  setting(f"{mirror}:LAT", 0.25, "mm", 3),
                  setting(f"{mirror}:VERT", -1.1, "mm", 3)]
    loads += [DbLoad("bimorph.db", {"DEV": "BL04I-MO-PSU-01", "N": str(n),
                                    "V": _num(_bimorph_volts(n))}) for n in range(22)]
    for n, gain in ((1, 1.2), (2, 0.9)):
        xbpm = f"BL04I-DI-XBPM-0{n}"
        loads += _xy_position(xbpm, beam)
        loads.append(reading(f"{xbpm}:INTEN", gain=gain, beam=beam, rnoise=0.01, anoise=0.002,
                             egu="uA", prec=3, low=(0.3, MINOR), lolo=(0.05, MAJOR),
                             desc="XBPM total intensity"))
    loads.append(reading("BL04I-DI-QBPM-01:INTEN", gain=1.6, beam=beam, rnoise=0.01,
                         anoise=0.002, egu="uA", prec=3, low=(0.4, MINOR), lolo=(0.05, MAJOR),
                         desc="QBPM intensity"))
    for n, (xgap, ygap) in enumerate(((2.0, 1.0), (1.2, 0.6), (0.5, 0.3), (0.08, 0.05)),
                                     start=1):
        loads += [setting(f"BL04I-AL-SLITS-0{n}:XGAP", xgap, "mm", 3),
                  setting(f"BL04I-AL-SLITS-0{n}:YGAP", ygap, "mm", 3)]
    loads += [
        setting("BL04I-MO-FSWT-01:VERT_REQ", 20, "um", 1, desc="Wanted vertical size"),
        setting("BL04I-MO-FSWT-01:NUM_FILTERS", 6, "", 0, desc="Lenses in"),
        bit("BL04I-MO-FSWT-01:START_RBV", 0, "Idle", "Busy", desc="Transfocator busy"),
        reading("BL04I-MO-FSWT-01:VER", 20.1, anoise=0.05, egu="um", prec=2,
                desc="Vertical size readback"),
    ]
    gauges = {f"BL04I-VA-GAUGE-0{i}": b for i, b in
              enumerate((3e-9, 4.5e-9, 2.2e-9, 6e-9, 3.8e-9, 8e-9, 5.5e-9, 1.2e-8), start=1)}
    for dev, base in gauges.items():
        loads.append(gauge(dev, base, chatter=dev == CHATTER_GAUGE, spike=dev == SPIKE_GAUGE))
    pumps = (2.5e-9, 3e-9, 4e-9, 2e-9, 5e-9, 3.5e-9, 6e-9, 7e-9, 4.2e-9, 9e-9)
    loads += [gauge(f"BL04I-VA-IONP-{i:02d}", b) for i, b in enumerate(pumps, start=1)]
    loads += [valve("BL04I-VA-VALVE-01", "BL04I-VA-GAUGE-01"),
              valve("BL04I-VA-VALVE-02", "BL04I-VA-GAUGE-03"),
              valve("BL04I-VA-VALVE-03", "BL04I-VA-GAUGE-05"),
              valve("BL04I-VA-VALVE-04", "BL04I-VA-GAUGE-07")]
    return IocDefinition("optics", "BL04I-MO-IOC-01",
                         "optics: DCM, mirrors, XBPMs, slits, vacuum, beamline mode", 2,
                         tuple(loads))


def _endstation() -> IocDefinition:
    loads = [DbLoad("endstation.db"),
             shutter("BL04I-PS-SHTR-01", "BL04I-VA-GAUGE-09"),  # experiment-hutch shutter
             message("BL04I-MO-ROBOT-01:CNTL_ERR_MSG", flag="$(P)$(IOC):SIM:ROBOT",
                     on="Light curtain tripped", desc="Controller error")]
    cs = "BL04I-EA-CSTRM-01"
    loads += [
        reading(f"{cs}:BACKPRESS", 0.02, anoise=0.004, egu="bar", prec=3, high=(0.08, MINOR),
                hihi=(0.1, MAJOR), desc="Cryojet back pressure"),
        reading(f"{cs}:EVAPTEMP", 88, anoise=0.2, egu="K", prec=1, desc="Evaporator temp"),
        reading(f"{cs}:SUCTTEMP", 291, anoise=0.3, egu="K", prec=1, desc="Suction temp"),
        reading("BL04I-EA-DEWAR-01:PRESSURE", 0.6, anoise=0.01, egu="bar", prec=2,
                high=(1.5, MINOR), hihi=(2.0, MAJOR), desc="Dewar pressure"),  # est. name
        reading("BL04I-EA-EIGER-01:CAM:Temp0_RBV", 24, anoise=0.2, egu="degC", prec=1,
                high=(35, MINOR), hihi=(45, MAJOR), desc="Detector temperature"),
        reading("BL04I-EA-EIGER-01:CAM:Humid0_RBV", 3.5, anoise=0.1, egu="%", prec=1,
                high=(10, MINOR), hihi=(20, MAJOR), desc="Detector humidity"),
        setting("BL04I-EA-EIGER-01:CAM:PhotonEnergy", 12658, "eV", 0, desc="Threshold energy"),
        reading("BL04I-EA-PIN-01:I", gain=2.4, beam="sample", rnoise=0.02, anoise=0.001,
                egu="uA", prec=3, low=(0.5, MINOR), lolo=(0.1, MAJOR), desc="i-pin current"),
        reading("BL04I-MO-FLUX-01:SAMP", gain=2.3e12, beam="sample", rnoise=0.02, egu="ph/s",
                prec=3, low=(5e11, MINOR), lolo=(1e11, MAJOR), desc="Flux at the sample"),
        reading("BL04I-EA-ATTN-01:MATCH", 1.0, egu="", prec=4, desc="Best transmission"),
        reading("BL04I-EA-ATTN-01:CONV_TRANS_RBV", 1.0, egu="", prec=4, desc="Transmission"),
        setting("BL04I-EA-ATTN-01:T2A:SETVAL1", 1.0, "", 4, desc="Wanted transmission"),
    ]
    robot = "BL04I-MO-ROBOT-01"
    loads += [
        setting(f"{robot}:NEXT_PUCK", 12, "", 0), setting(f"{robot}:NEXT_PIN", 4, "", 0),
        reading(f"{robot}:NEXT_PUCK_RBV", 12, prec=0), reading(f"{robot}:NEXT_PIN_RBV", 4, prec=0),
        reading(f"{robot}:CURRENT_PUCK_RBV", 12, prec=0, desc="Mounted puck"),
        reading(f"{robot}:CURRENT_PIN_RBV", 4, prec=0, desc="Mounted pin"),
        bit(f"{robot}:PROGRAM_RUNNING", 0, "No", "Yes", desc="Robot busy"),
    ]
    loads += [
        setting("BL04I-MO-DET-01:Z", 250, "mm", 2, desc="Detector distance"),
        integer("BL04I-MO-DET-01:Z:DISABLED", 0, desc="Z blocked by robot"),
        integer("BL04I-MO-DET-01:CLOSE_LIMIT", 0, desc="Cover closed limit"),
        integer("BL04I-MO-DET-01:OPEN_LIMIT", 1, desc="Cover open limit"),
        integer("BL04I-MO-PMAC-02:CRATE2_HEALTHY", 1, low=(0, MAJOR), desc="Crate 2 power"),
    ]
    sgon = "BL04I-MO-SGON-01"
    loads += [setting(f"{sgon}:{axis}", val, egu, 4) for axis, val, egu in (
        ("X", 0.1243, "mm"), ("Y", -0.0412, "mm"), ("Z", 0.2871, "mm"), ("OMEGA", 0.0, "deg"),
        ("CHI", 0.0, "deg"), ("PHI", 0.0, "deg"))]
    loads.append(integer(f"{sgon}:DISABLED", 0, desc="Smargon disabled"))
    loads += [setting(f"BL04I-MO-MAPT-01:{axis}", val, "mm", 3)
              for axis, val in (("X", 2.389), ("Y", 40.951), ("Z", 15.8))]
    loads += [integer(f"BL04I-MO-MAPT-01:Y:{size}_CALC", int(size == "MEDIUM"),
                      desc=f"{size.title()} aperture in") for size in ("SMALL", "MEDIUM", "LARGE")]
    loads += [setting("BL04I-MO-SCAT-01:X", 5.3375, "mm", 4),
              setting("BL04I-MO-SCAT-01:Y", 35.0, "mm", 3)]
    loads += [setting(f"BL04I-MO-BS-01:{axis}", val, "mm", 3)
              for axis, val in (("X", 0.0), ("Y", 0.0), ("Z", 30.0))]
    loads += [bit(f"BL04I-EA-ATTN-01:FILTER{n}:INLIM", 0, "Out", "In", desc=f"Filter {n} in")
              for n in range(1, 17)]
    loads += [gauge("BL04I-VA-GAUGE-09", 1.5e-8), gauge("BL04I-VA-GAUGE-10", 2.4e-8),
              gauge("BL04I-VA-IONP-11", 1.1e-8), gauge("BL04I-VA-IONP-12", 1.9e-8)]
    return IocDefinition("endstation", "BL04I-EA-IOC-01",
                         "endstation: cryojet, dewar, robot, Eiger, shutters, i-pin", 3,
                         tuple(loads), pva=True)


def _control() -> IocDefinition:
    return IocDefinition("control", "BL04I-SIM-IOC-01",
                         "sim control: fault flags the other IOCs read", 4,
                         (DbLoad("control.db"),), can_go_down=False)


def _common(ioc: IocDefinition) -> IocDefinition:
    """Every IOC serves its health records; beamline IOCs also mirror the faults."""
    extra = [DbLoad("iocstats.db")]
    if ioc.can_go_down:
        extra.append(DbLoad("simlink.db"))
    return IocDefinition(ioc.name, ioc.ioc, ioc.title, ioc.offset, (*extra, *ioc.loads),
                         ioc.can_go_down, ioc.pva)


IOCS: tuple[IocDefinition, ...] = tuple(
    _common(build()) for build in (_machine, _frontend, _optics, _endstation, _control)
)
IOC_NAMES = tuple(i.name for i in IOCS)
DOWNABLE_IOCS = tuple(i.name for i in IOCS if i.can_go_down)
