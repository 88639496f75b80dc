"""The pinned public files ephys2tx reads: where each comes from and its sha256."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DataFile:
    """One public file, pinned to a commit and a checksum."""

    name: str  # path inside the data directory (and inside a mirror)
    repo: str
    commit: str
    path: str
    sha256: str
    licence: str

    @property
    def url(self) -> str:
        return f"https://raw.githubusercontent.com/{self.repo}/{self.commit}/{self.path}"


_REF_STUDY = (
    "tschwider09/cross-species-ephys-transfer",
    "f917b0fdf5df1e024199abe222b508243145ad82",
)
_SCMNC = ("daifengwanglab/scMNC", "ae9e39b5abe2ff0c85e3c986689c22c0ab6b2c3d")
_HOWARD = ("derekhoward/extract_patchseq_features", "086e3d295112e88f7387ae4a9b40d510e28e2f9c")
_LEE = ("AllenInstitute/human_patchseq_gaba", "5eb357a1cea246c7c847b5608a8fc7e87ea95b58")
_HODGE = ("ManiVaultStudio/PatchSeqLoader", "9a3b02458e0754f9ac40e36f77d0c99230683762")
_DRCME_FV = ("smestern/drcme", "730fe4b8476a665c7fb63f67658e0f1a3c7bc582")
_DRCME = ("AllenInstitute/drcme", "9f6555cd9a9388946eba9f7f627dbb92c1ba7e94")
_SCALA = ("berenslab/mini-atlas", "3bf98a524b8e48aa8647e1b9ae8f2351d9c712c9")
_ALLEN_LICENCE = "Allen Institute Software License"
_SCALA_LICENCE = "no licence file; data of Scala et al. 2021"

DATA_FILES: dict[str, DataFile] = {
    f.name: f
    for f in [
        DataFile(
            "mouse_gouwens2020/20200711_patchseq_metadata_mouse.csv",
            *_REF_STUDY,
            "20200711_patchseq_metadata_mouse.csv",
            "f29b5687dbe6dae5a47f9f3d9b7def77d30495c7c013ca82ab88ff785b8977fd",
            "MIT (repository); Allen Institute data",
        ),
        DataFile(
            "mouse_gouwens2020/efeature.csv",
            *_SCMNC,
            "mouse_visual_cortex/data/efeature.csv",
            "53cddf3f2edc38ccda2f3156c686f8d97c0f6010b3db7b2cbb2a3fe2232f82f8",
            "no licence file (Allen Institute data)",
        ),
        DataFile(
            "mouse_gouwens2020/ephys_features_gouwens_w_QC.csv",
            *_HOWARD,
            "ephys_features_gouwens_w_QC.csv",
            "f3e4145b736004dfcc94b94a5dac1b8ad6a9a1ff931de508dcd2af76e2050d7b",
            "no licence file (Allen Institute data)",
        ),
        DataFile(
            "human_lee2023/LeeDalley_ephys_fx.csv",
            *_LEE,
            "data/LeeDalley_ephys_fx.csv",
            "1ec12b02ba41288d69cdac21d6ac1efa05ff819fd6e052dd48666500e23ced9b",
            _ALLEN_LICENCE,
        ),
        DataFile(
            "human_lee2023/LeeDalley_manuscript_metadata_v2.csv",
            *_LEE,
            "data/LeeDalley_manuscript_metadata_v2.csv",
            "c6c72fd87a9fdd67b08ed105f46529383962d05c1617b3fe2220e46e8af14b17",
            _ALLEN_LICENCE,
        ),
        DataFile(
            "human_lee2023/DataS1_Donor_table.csv",
            *_LEE,
            "data/DataS1_Donor_table.csv",
            "d50138865487b6a913a23d0b0bf0473f6b7414f994803d1ae5656903c036943b",
            _ALLEN_LICENCE,
        ),
        DataFile(
            "mouse_scala2021/m1_patchseq_ephys_features.csv",
            *_SCALA,
            "data/m1_patchseq_ephys_features.csv",
            "32825f3837d7ce1144aa1521b23122a5df0da961a92021e12766e9cbec4998e6",
            _SCALA_LICENCE,
        ),
        DataFile(
            "mouse_scala2021/m1_patchseq_meta_data.csv",
            *_SCALA,
            "data/m1_patchseq_meta_data.csv",
            "5c47ec8c5437bba95d4b75dd66896e33aa67dce294621982a466ad23abcf63d4",
            _SCALA_LICENCE,
        ),
        DataFile(
            "homology/hodge_taxonomy.csv",
            *_HODGE,
            "res/hodge_taxonomy.csv",
            "0e9aefc945d992835ed0cd082208b7e1daa0193e7b34caa5f54f5cd6892f47df",
            "LGPL-2.1 (repository); Allen Institute data",
        ),
        DataFile(
            "feature_vectors/fv_sample2.h5",
            *_DRCME_FV,
            "drcme/bin/output2/fv_sample2.h5",
            "02fc72c998454e4b1ff3ee08f90a71844e7506393920fc3b00afa8d9080018b2",
            _ALLEN_LICENCE,
        ),
        DataFile(
            "feature_vectors/spca_inh_patchseq_cell_2020_config.json",
            *_DRCME,
            "config/spca_inh_patchseq_cell_2020_config.json",
            "ded9e96c7beec233c23e403ba2519f00f8355beac3bc432bcf27b6117d19feca",
            _ALLEN_LICENCE,
        ),
        DataFile(
            "feature_vectors/default_spca_params.json",
            *_DRCME,
            "config/default_spca_params.json",
            "904673c50da4ff5c583d0ce5664251d6d98924bd643b14faca63a55fc104216d",
            _ALLEN_LICENCE,
        ),
    ]
}

CITATIONS = {
    "mouse": "Gouwens et al. 2020, Cell 183:935 (Allen Institute mouse VISp Patch-seq)",
    "human": "Lee, Dalley et al. 2023, Science 382:eadf6484 (human neocortical GABAergic Patch-seq)",
    "homology": "Hodge et al. 2019, Nature 573:61 (human MTG taxonomy and mouse homology)",
}
