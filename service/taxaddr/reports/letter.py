"""The taxpayer's accounting letter (PDF): plain language, one page per few disclosures.

Besides the disclosure response, the only document that holds a taxpayer's name: the
letter is addressed to them. It lists each disclosure (to whom, when, under which case
and statute, why, for which tax years) and explains how anyone can check each entry
against the public audit log without trusting the service. The answer's JSON is
embedded as ``accounting.json`` so the proofs travel with the letter.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from fpdf import FPDF

ATTACHMENT = "accounting.json"


def _latin1(text: str) -> str:
    return text.encode("latin-1", "replace").decode("latin-1")


def accounting_letter(
    answer: Mapping[str, Any], *, taxpayer_name: str, generated_at: datetime, vkey: str
) -> bytes:
    """The letter for ``answer`` (the contract's accounting answer) to ``taxpayer_name``."""
    pdf = FPDF(orientation="portrait", unit="mm", format="A4")
    pdf.set_creation_date(generated_at)
    pdf.set_title("Accounting of disclosures of your address")
    pdf.set_author("taxaddr")
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.set_margins(18, 18, 18)
    pdf.add_page()

    def para(text: str, size: int = 10, style: str = "") -> None:
        pdf.set_font("Helvetica", style, size)
        pdf.multi_cell(0, 5, _latin1(text), new_x="LMARGIN", new_y="NEXT")
        pdf.ln(1.5)

    disclosures = list(answer["disclosures"])
    checkpoint = answer["checkpoint"]
    para("Accounting of disclosures of your address", 15, "B")
    para(f"Date: {generated_at.date().isoformat()}")
    para(f"To: {taxpayer_name}")
    para(
        "Section 6103(p)(3)(A) of the Internal Revenue Code requires a record of every "
        "disclosure of your tax information, and you may learn whether and why it was "
        "disclosed. This letter lists every disclosure of your address that this "
        "service has made to a law-enforcement agency under 26 U.S.C. 6103(i)(2), which "
        "allows it only for a federal criminal case named in a court's signed case "
        "reference. Refused requests are not disclosures and are not listed."
    )
    if not disclosures:
        para("We found no disclosure of your address.", 11, "B")
    else:
        para(f"Your address was disclosed {len(disclosures)} time(s):", 11, "B")
    for number, entry in enumerate(disclosures, 1):
        periods = ", ".join(entry.get("tax_periods") or []) or "-"
        para(f"{number}. On {entry['time']}", 10, "B")
        para(
            f"To: {entry['requester_id']} of {entry['agency']}\n"
            f"Case: {entry['case_number']} ({entry['court']})\n"
            f"Statute: {entry['statute']}\n"
            f"Tax years asked about: {periods}\n"
            f"Reason the agency stated: {entry['reason']}\n"
            f"Disclosure id: {entry['disclosure_id']}\n"
            f"Audit log entry: number {entry['leaf_index']}, hash {entry['leaf_hash']}"
        )
    para("How anyone can check these entries", 11, "B")
    para(
        "Every decision of this service is an entry of a public, append-only audit log "
        "(an RFC 6962 Merkle tree). The entries hold no name, tax number or address. "
        f"This letter cites the log's signed checkpoint of size {checkpoint['tree_size']} "
        f"with root hash {checkpoint['root_hash']}. For each disclosure above, the "
        f"attached file {ATTACHMENT} holds its inclusion proof: hashing the audit log "
        "entry with the listed proof hashes (RFC 6962, section 2.1.1) must give exactly "
        "that root hash, and the checkpoint note in the file must carry a valid signature "
        f"of the log's public key {vkey}. An oversight body, a court or anyone with the "
        "public log can do this without our help; `taxaddr audit verify-proof` is one "
        "such checker. An entry that does not check out means the record was altered."
    )
    para(
        "If you believe a disclosure was not lawful, you may contact the Treasury "
        "Inspector General for Tax Administration (TIGTA) and cite the disclosure id."
    )
    pdf.set_font("Helvetica", "", 8)
    pdf.multi_cell(0, 4, _latin1(checkpoint["note"]), new_x="LMARGIN", new_y="NEXT")
    pdf.embed_file(
        basename=ATTACHMENT,
        bytes=json.dumps(dict(answer), indent=2, sort_keys=True).encode("utf-8"),
        desc="the accounting answer with inclusion proofs",
        modification_date=generated_at,
        mime_type="application/json",
    )
    return bytes(pdf.output())
