"""What the published study reported, in one place, for side-by-side rows in the report.

Schwider & Ramezani 2026, "Cross-Species Transfer Learning for Electrophysiology-to-
Transcriptomics Mapping in Cortical GABAergic Interneurons" (random splits, not grouped
by donor; 3,699 mouse and 506 human cells; zero-padded feature families).
"""

PUBLISHED_STUDY = (
    "Schwider & Ramezani 2026, Cross-Species Transfer Learning for Electrophysiology-to-"
    "Transcriptomics Mapping in Cortical GABAergic Interneurons"
)

# row key -> (reported figure as printed, how the study got it)
REPORTED: dict[str, tuple[str, str]] = {
    "rf_mouse_label5": ("not published", "the study's forest/sPCA code was never released"),
    "rf_mouse_label": ("not published", "the study's forest/sPCA code was never released"),
    "rf_human_label": ("not published", "the study's forest/sPCA code was never released"),
    "bilstm_mouse_label5": ("0.860–0.887", "60/20/20 random split x 10 seeds"),
    "bilstm_human_label": ("0.669–0.675", "5-fold random split x 10 seeds"),
    "transfer_human_only": ("0.6580 ± 0.0286", "human-only BiLSTM, random folds"),
    "transfer_best": ("0.6795 ± 0.0120", "joint mouse+human, then fine-tune"),
}

PROTOCOL_NOTES = [
    "Our default protocol is donor-grouped: no donor has cells in both training and test "
    "folds (repeated stratified group K-fold). The study split cells at random, so cells of "
    "one donor sat on both sides; its numbers are not directly comparable. We also run its "
    "protocol (`seed`) so the two can be set side by side.",
    "Features: we use the public IPFX feature tables (Gouwens et al. 2020 mouse, Lee et al. "
    "2023 human) harmonized to one naming and unit system; the study extracted features "
    "itself from the NWB files and filled failed families with zeros. Missing values here "
    "stay missing (NaN plus a mask).",
    "Cells: 4,217 mouse cells pass our QC (the study used 3,699) and 702 human cells "
    "(the study used 506), because we keep every labelled cell with features.",
]
