"""FAIR export of one run folder as an RO-Crate (https://w3id.org/ro/crate), with the
``rocrate`` library.

The crate holds the job records (``records/``), the instrument's raw exports (``raw/``),
``summary.csv``, ``summary.json``, the plots (``plots/``) and the bench configuration the run
used (``bench/``, every file of the bench folder, with the SHA-256 of each and
:func:`asab.results.provenance.config_hash` over them). Its JSON-LD metadata says who
(``--author``, else nobody is claimed), what (the measured quantities, the methods, the stock
solutions with batch and manufacturer — "missing" where the bench configuration has none),
when (first start, last end of the records), where (the bench), with which instruments and
software, under CC-BY-4.0.

Vocabulary. Quantities carry ``propertyID`` IRIs of EMMO 1.0.3 (``disciplines/isq.ttl``,
``disciplines/metrology.ttl`` of github.com/emmo-repo/EMMO, commit 01f1f928, read offline)
and units QUDT unit IRIs as ``unitCode`` (those EMMO's own files reference:
``disciplines/units/*.ttl``). The electrolyte is typed with the EMMO electrochemistry domain
(github.com/emmo-repo/domain-electrochemistry, ``reference/electrochemistry-reference.ttl``,
version 0.37.2, commit 588dffa7). Neither ontology has a term for vibrating-tube densimetry
or rolling-ball viscometry: the methods are schema.org ``DefinedTerm`` entities with a
description, no ontology IRI (none invented).
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

import asab
from asab.results.provenance import bench_provenance, read_provenance
from asab.results.table import ResultsError, collect, record_files, write_csv

LICENSE = "https://creativecommons.org/licenses/by/4.0/"
"""The data's licence, CC-BY-4.0."""
SOFTWARE_LICENSE = "https://spdx.org/licenses/MIT"
"""asab's own licence (pyproject.toml ``license``)."""

EMMO = "https://w3id.org/emmo#"
ECHEM = "https://w3id.org/emmo/domain/electrochemistry#"
QUDT = "http://qudt.org/vocab/unit/"
IRI = {
    # EMMO 1.0.3 disciplines/isq.ttl (skos:prefLabel in parentheses)
    "density": EMMO + "EMMO_06448f64_8db6_4304_8b2c_e785dba82044",  # Density
    "viscosity": EMMO + "EMMO_908da3d5_775e_425e_af96_33914618eb66",  # DynamicViscosity
    "mole_fraction": EMMO + "EMMO_04b3300c_98bd_42dc_a3b5_e6c29d69f1ac",  # AmountFraction
    "temperature": EMMO + "EMMO_affe07e4_e9bc_4852_86c6_69e26182a17f",  # ThermodynamicTemperature
    # EMMO 1.0.3 disciplines/metrology.ttl
    "measurement": EMMO + "EMMO_463bcfda_867b_41d9_a967_211d4d437cfb",  # Measurement
    "instrument": EMMO + "EMMO_f2d5d3ad_2e00_417f_8849_686f3988d929",  # MeasuringInstrument
    # domain-electrochemistry 0.37.2 reference/electrochemistry-reference.ttl
    "electrolyte": ECHEM + "electrochemistry_5f9a9411_05f9_4576_acd3_81d7d41cfe98",  # NonAqueousElectrolyte
}
"""Ontology IRIs used, each checked in the ontology's published TTL (module docstring)."""

UNITS = {  # QUDT unit IRIs as referenced by EMMO's units modules
    "density": (QUDT + "GM-PER-CentiM3", "g/cm3"),
    "viscosity": (QUDT + "MilliPA-SEC", "mPa*s"),
    "mole_fraction": (QUDT + "MOL-PER-MOL", "mol/mol"),
    "temperature": (QUDT + "K", "K"),
}

INSTRUMENTS = {
    # model names: README.md (the 2023 bench as built)
    "pump": ("CETONI", "neMESYS low-pressure syringe pump"),
    "valve": ("CETONI", "Qmix V rotary valve"),
    "balance": ("Sartorius", "Entris II BCE224I-1S"),
    "densimeter": ("Anton Paar", "DMA 4100 M density meter with Lovis 2000 ME "
                                 "rolling-ball viscometer"),
}

METHODS = {
    "#method-density": ("vibrating-tube densimetry",
                        "density from the oscillation period of a U-tube filled with the "
                        "sample (Anton Paar DMA 4100 M), three repetitions, mean of the valid "
                        "ones; sample standard deviation as its spread"),
    "#method-viscosity": ("rolling-ball viscometry",
                          "dynamic viscosity from the rolling time of a ball in an inclined "
                          "capillary (Anton Paar Lovis 2000 ME), with the density of the same "
                          "filling; three repetitions"),
    "#method-formulation": ("automated formulation from stock solutions",
                            "stock solutions mixed by syringe pumps through a passive mixer "
                            "at flows that give the requested mole fractions (asab.formulation); "
                            "the delivered mass checked on a balance"),
}

MISSING = "missing (not recorded in the bench configuration)"


def export_run(run_dir: Path, out: Path, *, author: str | None = None,
               config: Path | None = None) -> Path:
    """Write the RO-Crate of run folder ``run_dir`` to folder ``out`` (created; must be
    empty or missing).

    Args:
        author: name of the person responsible (``creator``); none is claimed without it.
        config: the bench folder or bench.toml of the run, for runs whose ``summary.json``
            names none (before issue 15).

    Returns:
        ``out``; ``out/ro-crate-metadata.json`` is the JSON-LD.

    Raises:
        ResultsError: ``run_dir`` is missing, holds no records or an unreadable one, names no
            bench configuration (and ``config`` is not given), or ``out`` is not empty.
        ConfigError: the bench configuration does not load.
        OSError: a file cannot be read or written.
    """
    from rocrate.model.contextentity import ContextEntity
    from rocrate.rocrate import ROCrate

    from asab.results.plots import write_plots
    from asab.results.table import load_config

    run_dir, out = Path(run_dir), Path(out)
    files = record_files(run_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ResultsError(f"{out}: exists and is not an empty folder (choose a new --out)")
    table = collect([run_dir])
    if config is not None:
        from asab.config.benches import BENCH_FILE

        bench_file = Path(config) / BENCH_FILE if Path(config).is_dir() else Path(config)
        prov = bench_provenance(bench_file, name=table.rows[0].bench if table.rows else None)
    else:
        prov = read_provenance(run_dir)
    if prov is None:
        raise ResultsError(f"{run_dir}: names no bench configuration (summary.json has no "
                           "bench_config: a run before issue 15); give the bench with --config")
    bench_file = Path(prov["path"])
    if not bench_file.is_file():
        raise ResultsError(f"{run_dir}: its bench configuration {bench_file} is gone; give the "
                           "bench with --config")
    now = bench_provenance(bench_file, name=prov.get("name"))
    cfg = load_config(bench_file)
    records = [json.loads(p.read_bytes()) for p in files]

    crate = ROCrate()
    root = crate.root_dataset
    started = min((r.get("started") for r in records if r.get("started")), default=None)
    ended = max((r.get("finished") or r.get("started") for r in records
                 if r.get("finished") or r.get("started")), default=None)
    root["name"] = (f"density and viscosity of electrolytes: asab run folder "
                    f"{run_dir.resolve().name!r}, bench {cfg.name}")
    root["description"] = (
        f"{len(table.rows)} density/viscosity jobs on bench {cfg.name} "
        f"({sum(r.status == 'succeeded' for r in table.rows)} succeeded): records, raw "
        "instrument exports, results table, plots and the bench configuration.")
    root["license"] = {"@id": LICENSE}
    if ended:
        root["datePublished"] = ended
    root["keywords"] = ["battery electrolyte", "density", "viscosity", "LiPF6",
                        "self-driving laboratory"]

    def entity(ident: str, props: dict[str, Any]):
        return crate.add(ContextEntity(crate, ident, properties=props))

    entity(LICENSE, {"@type": "CreativeWork", "name": "CC-BY-4.0",
                     "description": "Creative Commons Attribution 4.0 International"})
    entity(SOFTWARE_LICENSE, {"@type": "CreativeWork", "name": "MIT",
                              "description": "the licence of asab (pyproject.toml)"})
    software = entity("#asab", {
        "@type": "SoftwareApplication", "name": "asab (asab-lab)",
        "softwareVersion": asab.__version__, "license": {"@id": SOFTWARE_LICENSE},
        "description": "Autonomous Synthesis and Analysis of Battery electrolytes"})
    versions = sorted({r.get("software_version") for r in records if r.get("software_version")})
    if versions and versions != [asab.__version__]:
        software["description"] += f"; the records were written by version(s) {', '.join(versions)}"
    if author:
        person = entity("#author", {"@type": "Person", "name": author})
        root["creator"] = person
        root["author"] = person
    place = entity("#bench", {"@type": "Place", "name": f"bench {cfg.name}",
                              "description": "the robotic bench the run was measured on "
                                             "(configuration in bench/)"})
    root["contentLocation"] = place

    instruments = _instruments(cfg, entity)
    methods = [entity(ident, {"@type": "DefinedTerm", "name": name, "description": text})
               for ident, (name, text) in METHODS.items()]
    variables = [_variable(entity, key) for key in ("density", "viscosity", "mole_fraction",
                                                    "temperature")]
    root["variableMeasured"] = variables
    root["measurementTechnique"] = [m for m in methods[:2]]
    electrolyte = entity("#electrolyte", {
        "@type": ["Thing"], "additionalType": {"@id": IRI["electrolyte"]},
        "name": "/".join(table.chemicals) or "electrolyte",
        "description": "the non-aqueous electrolytes formulated and measured "
                       "(compositions per sample in summary.csv)"})
    root["about"] = electrolyte
    chems = [entity(f"#chemical-{c.name}", {
        "@type": "Thing", "name": c.name, "identifier": f"InChIKey={c.inchikey}",
        "description": f"SMILES {c.smiles}; molar mass {c.molar_mass} g/mol"})
        for c in cfg.chemicals if c.name in table.chemicals or not table.chemicals]
    stocks = [_stock(entity, s, cfg) for s in cfg.stocks]

    # files
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        parts = []
        for path in files:
            parts.append(crate.add_file(path, f"records/{path.name}", properties={
                "name": f"job record {path.stem}", "encodingFormat": "application/json"}))
        for path in sorted((run_dir / "raw").glob("*")) if (run_dir / "raw").is_dir() else []:
            parts.append(crate.add_file(path, f"raw/{path.name}", properties={
                "name": f"raw export {path.name} (Anton Paar DMA 4100 M / Lovis 2000 ME)",
                "encodingFormat": "text/csv"}))
        summary_csv = run_dir / "summary.csv"
        if not summary_csv.is_file():
            summary_csv = write_csv(table, scratch / "summary.csv")
        parts.append(crate.add_file(summary_csv, "summary.csv", properties={
            "name": "results table: one row per job, units in the header",
            "encodingFormat": "text/csv", "variableMeasured": variables}))
        if (run_dir / "summary.json").is_file():
            parts.append(crate.add_file(run_dir / "summary.json", "summary.json", properties={
                "name": "run summary", "encodingFormat": "application/json"}))
        plot_dir = run_dir / "plots"
        if not plot_dir.is_dir() or not any(plot_dir.iterdir()):
            plot_dir = scratch / "plots"
            write_plots(table, plot_dir, config=cfg)
        for path in sorted(plot_dir.iterdir()):
            fmt = {".png": "image/png", ".svg": "image/svg+xml",
                   ".txt": "text/plain"}.get(path.suffix, None)
            parts.append(crate.add_file(path, f"plots/{path.name}", properties={
                "name": f"plot {path.stem} ({path.suffix[1:]})",
                **({"encodingFormat": fmt} if fmt else {})}))
        bench_parts = []
        hashes = {f["name"]: f for f in now["files"]}
        for path in sorted(bench_file.parent.iterdir(), key=lambda p: p.name):
            if path.is_file():
                bench_parts.append(crate.add_file(path, f"bench/{path.name}", properties={
                    "name": f"bench configuration file {path.name}",
                    "sha256": hashes[path.name]["sha256"],
                    "contentSize": str(hashes[path.name]["bytes"])}))
        changed = prov.get("sha256") and prov["sha256"] != now["sha256"]
        bench_ds = crate.add_dataset(None, "bench/", properties={
            "name": f"bench configuration {cfg.name}",
            "description": ("the files of the bench folder the run used; identifier: SHA-256 "
                            "over '<sha256>  <name>' lines of its files sorted by name"
                            + ("; WARNING: the folder changed since the run (the run recorded "
                               f"{prov['sha256']})" if changed else "")),
            "identifier": f"sha256:{now['sha256']}", "hasPart": bench_parts})
        action = entity("#run", {
            "@type": "CreateAction", "name": f"asab run on bench {cfg.name}",
            "agent": software, "instrument": [software, *instruments],
            "object": [bench_ds, *stocks], "result": parts,
            **({"startTime": started} if started else {}),
            **({"endTime": ended} if ended else {}),
            "additionalType": {"@id": IRI["measurement"]},
            "mentions": chems})
        root["mentions"] = [action, *stocks]
        crate.write(out)
    return out


def _variable(entity, key: str):
    code, text = UNITS[key]
    names = {"density": "density", "viscosity": "dynamic viscosity",
             "mole_fraction": "mole fraction (amount fraction)",
             "temperature": "thermodynamic temperature of the cell"}
    return entity(f"#quantity-{key}", {"@type": "PropertyValue", "name": names[key],
                                       "propertyID": IRI[key], "unitCode": code,
                                       "unitText": text})


def _instruments(cfg, entity) -> list:
    out = []

    def add(ident: str, kind: str, name: str, extra: str = ""):
        maker, model = INSTRUMENTS[kind]
        out.append(entity(ident, {
            "@type": "IndividualProduct", "name": name, "model": model,
            "manufacturer": {"@id": f"#maker-{maker.replace(' ', '-')}"},
            "additionalType": {"@id": IRI["instrument"]},
            **({"description": extra} if extra else {})}))
        entity(f"#maker-{maker.replace(' ', '-')}", {"@type": "Organization", "name": maker})

    for p in cfg.pumps:
        add(f"#pump-{p.name}", "pump", f"syringe pump {p.name}",
            f"Qmix device {getattr(p, 'device', '')}".strip())
    for v in cfg.valves:
        if getattr(v, "kind", "rotary") == "rotary" or "Qmix" in str(getattr(v, "device", "")):
            add(f"#valve-{v.name}", "valve", f"rotary valve {v.name}",
                f"Qmix device {getattr(v, 'device', '')}".strip())
    if cfg.balance is not None:
        add(f"#balance-{cfg.balance.name}", "balance", f"balance {cfg.balance.name}",
            f"readability {cfg.balance.readability} g")
    if cfg.densimeter is not None:
        add(f"#densimeter-{cfg.densimeter.name}", "densimeter",
            f"densimeter {cfg.densimeter.name}",
            f"method {cfg.densimeter.method} at {cfg.densimeter.temperature} K")
    return out


def iso_date(text: str) -> str | None:
    """An ISO 8601 date of a date as stockSolutions.csv writes it — ``2023-08-14``,
    ``14.08.2023``, ``08/2023`` (month/year), ``2023`` — or None when it is not one."""
    text = text.strip()
    for pattern, build in (
            (r"(\d{4})-(\d{2})(?:-(\d{2}))?", lambda m: m.group(0)),
            (r"(\d{1,2})\.(\d{1,2})\.(\d{4})",
             lambda m: f"{m.group(3)}-{int(m.group(2)):02d}-{int(m.group(1)):02d}"),
            (r"(\d{1,2})/(\d{4})", lambda m: f"{m.group(2)}-{int(m.group(1)):02d}"),
            (r"(\d{4})", lambda m: m.group(1))):
        m = re.fullmatch(pattern, text)
        if m:
            out = build(m)
            month = out[5:7]
            return out if not month or 1 <= int(month) <= 12 else None
    return None


def _stock(entity, stock, cfg):
    names = {c.inchikey: c.name for c in cfg.chemicals}
    masses = ", ".join(f"{names.get(k, k)} {m.mass} g" for k, m in stock.components.items())
    produced = iso_date(stock.manufacturing_date)
    when = {"productionDate": produced} if produced else {}
    return entity(f"#stock-{quote(stock.name, safe='')}", {
        "@type": "Product", "name": stock.name,
        "identifier": stock.uuid or MISSING,
        "productID": stock.batch or MISSING,
        "manufacturer": stock.manufacturer or MISSING, **when,
        "description": (f"stock solution in {stock.reservoir}, drawn by pump {stock.pump}; "
                        f"made {stock.manufacturing_date or MISSING}; "
                        f"batch {stock.batch or MISSING}; components by mass: {masses}; "
                        f"total {stock.total_mass} g; density {stock.density} g/cm3 at "
                        f"{stock.density_temperature} K"
                        + (f"; {stock.references}" if stock.references else ""))})


def export_summary(crate_dir: Path) -> dict[str, Any]:
    """Counts of what a written crate holds (files by folder), for the command's output."""
    meta = json.loads((Path(crate_dir) / "ro-crate-metadata.json").read_text(encoding="utf-8"))
    ids = [e["@id"] for e in meta["@graph"] if "File" in _types(e)]
    counts: dict[str, int] = {}
    for i in ids:
        top = i.split("/", 1)[0] if "/" in i else "."
        counts[top] = counts.get(top, 0) + 1
    return {"crate": str(crate_dir), "files": counts}


def _types(e: dict) -> list[str]:
    t = e.get("@type", [])
    return t if isinstance(t, list) else [t]

