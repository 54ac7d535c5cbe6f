"""The built-in kinds of training data, registered through the plugin hook as any other plugin's:
``unpaired`` (two domain folders: MUNIT, UNIT), ``classes`` (class subfolders: FUNIT) and
``paired`` (aligned pairs: StEP). Named in the entry-point group ``napari_i2i.data_kinds`` and
cheap to import: torch and the datasets are imported by the methods that read or load data."""

from napari_i2i import hookimpl
from trainers.data_kinds.classes import ClassFoldersKind
from trainers.data_kinds.domains import DomainFoldersKind
from trainers.data_kinds.paired import PairedKind
from trainers.data_kinds.unpaired import UnpairedKind


@hookimpl
def i2i_register_data_kinds(registry):
    for kind in (UnpairedKind(), ClassFoldersKind(), PairedKind(), DomainFoldersKind()):
        registry.add_data_kind(kind)
