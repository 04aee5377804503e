"""Named text corpora from real text nobody here wrote, read offline from this machine.

Benchmarks and the auditor need text from several *distinct, labelled domains* without network access.
Debian ships such text as packages (dictionaries, fortunes, WordNet, man pages, licences), and every
machine has Python's standard library source. This module turns each source into a named domain of
plain-text documents within ``[min_chars, max_chars]``, and samples a corpus deterministically by seed.

Domains (``DOMAINS``; ``hff corpora`` lists them with their availability):

=============  =============================================  ================  ==========================
domain         source                                         Debian package    one document is
=============  =============================================  ================  ==========================
python_code    ``sysconfig.get_paths()["stdlib"]`` ``*.py``   (Python itself)   a function/class chunk
dictionary     GCIDE (Webster 1913 + WordNet), dictd          dict-gcide        an entry (tiny ones merged)
computing      FOLDOC computing dictionary, dictd             dict-foldoc       an entry (tiny ones merged)
jargon         The Jargon File (hacker lexicon), dictd        dict-jargon       an entry (tiny ones merged)
fortunes       ``/usr/share/games/fortunes/*``                fortunes          a fortune (tiny ones merged)
wordnet        WordNet 3.0 synset glosses                     wordnet-base      a group of glosses from one
                                                                                lexicographer file
licenses       ``/usr/share/common-licenses/*``               base-files        a chunk of a licence
manpages       ``/usr/share/man/man[1-8]`` (roff to text)     manpages          a chunk of a man page
=============  =============================================  ================  ==========================

Confusable pair: ``computing`` (FOLDOC) vs ``jargon`` (the Jargon File). Both are dictionaries of
computing terms with the same dictd layout, overlapping headwords, and FOLDOC quotes many Jargon File
entries; the dictionary markup that would give the source away (``{cross-references}``, FOLDOC's
``<category>`` tags and trailing ``(YYYY-MM-DD)`` dates) is stripped, so telling them apart takes the
register of the prose (FOLDOC is encyclopaedic, the Jargon File is hacker slang and folklore). A downstream
auditor uses this pair as the hard case; ``CONFUSABLE_PAIRS`` lists it.

Determinism: every domain lists its files in sorted order and splits them the same way, so
``iter_documents`` is stable across runs and machines with the same package versions; ``build_corpus``
samples with a ``numpy.random.Generator`` seeded from ``(seed, domain name)``. Domains with thousands of
files (``manpages``, ``python_code``) sample *files* first (spread over name families such as ``git-*``,
``gcloud_*`` or a stdlib package, so one big family does not dominate), then one document per file, so
300 documents do not parse 20,000 man pages.

One module per source (``dictd``, ``fortunes``, ``wordnet``, ``licenses``, ``manpages``, ``python_code``), their
shared shapes in ``base`` and the registry and sampling in ``domains``. Installing the Debian packages is the
CLI's job (``hff corpora --install``). Core package: standard library and numpy only (no HF import).
"""

from hf_fundamentals.corpora.base import (
    CORPUS_FORMAT_VERSION,
    DEFAULT_DOCS_PER_DOMAIN,
    DEFAULT_MAX_CHARS,
    DEFAULT_MIN_CHARS,
    CorpusSourceMissing,
    Domain,
    Piece,
)
from hf_fundamentals.corpora.domains import (
    CONFUSABLE_PAIRS,
    DEBIAN_PACKAGES,
    DOMAINS,
    available_domains,
    build_corpus,
    count_documents,
    forget_listings,
    iter_documents,
    iter_records,
    missing_packages,
    resolve_domains,
)

__all__ = [
    "CONFUSABLE_PAIRS",
    "CORPUS_FORMAT_VERSION",
    "DEBIAN_PACKAGES",
    "DEFAULT_DOCS_PER_DOMAIN",
    "DEFAULT_MAX_CHARS",
    "DEFAULT_MIN_CHARS",
    "DOMAINS",
    "CorpusSourceMissing",
    "Domain",
    "Piece",
    "available_domains",
    "build_corpus",
    "count_documents",
    "forget_listings",
    "iter_documents",
    "iter_records",
    "missing_packages",
    "resolve_domains",
]
