"""Plain-language explanations of imaging words, and "what is this image showing me?".

- :mod:`glossary.concepts`: the term data (``glossary/terms/*.toml``), its format and validating loader.
- :mod:`glossary.lookup`: :func:`~glossary.lookup.default_glossary` -> ``lookup(query)`` (exact, alias,
  phrase in a sentence, fuzzy with suggestions), ``find_terms(text)`` and ``explain(concept, lang)``.
- :mod:`glossary.describe`: ``describe_series`` / ``describe_study`` / ``describe_datasets`` from DICOM
  attributes alone; never a diagnosis, always pointing to the report and the patient's doctor.
- :mod:`glossary.reports`: the text of DICOM SR, encapsulated PDF/CDA, bare PDF or text reports.
- :mod:`glossary.text`: the normalisation every name and query goes through.
"""
