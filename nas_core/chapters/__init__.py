"""Code that only the book's chapters use, kept apart from the library that a
researcher imports: the study (``study``, ``study_figures``), what each chapter
asserts (``checks``, ``claims.yaml``), the unified view (``unified_view``), the
mechanisms (``mechanisms``), the cost view's figures of both (``cost_figures``)
and the explorer widget (``explorer``)."""
