"""The SSD itself (paper §2): default boxes (:mod:`.priors`), matching (:mod:`.matching`),
box coding (:mod:`.boxes`), the network (:mod:`.network`: a backbone from
:mod:`.backbones`, the heads of :mod:`.heads`), the MultiBox loss (:mod:`.loss`) and the
post-processing (:mod:`.postprocess`); :mod:`.builder` maps the ``model`` config to them and
:mod:`.weights` saves and loads a detector without pickle."""
