"""Clinical Flair, reproduced: the utilities behind the book's notebooks.

Modules follow the data flow, each importing only those before it:
``records`` (the book's file layout and every record read or written) -> ``data`` (datasets) ->
``corpus`` (pre-training text) -> ``lm`` (character language models) -> ``embeddings`` -> ``ner``
(runs) -> ``results`` (tables, figures) -> ``report`` (the README's and the introduction's
generated text). Beside the flow: ``files``, ``errors`` and ``profiles`` (used by any), ``jobs``
(where work runs), ``colab`` and ``book`` (the main job, which drives them all).
"""

__version__ = "0.1.0"

import warnings

# flair imports tqdm.auto, which warns in notebooks without ipywidgets; the text progress bars work
warnings.filterwarnings("ignore", message="IProgress not found", category=Warning)
