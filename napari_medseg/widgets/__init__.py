"""napari dock widgets (the only package besides the npe2 adapters that imports Qt/napari).

One panel per module: ``cases.CasesPanel``, ``predict.PredictPanel``, ``uncertainty.UncertaintyPanel``,
``review.ReviewPanel``, ``help.HelpPanel`` (and ``tools.ToolsPanel``). They share one
``_controller.ReviewController`` per viewer, a thin layer over ``napari_medseg.review.ReviewSession``.
"""
