"""The unified-style-space engine: presets, capabilities, styles and component edits.

One model translates into any of its domains; the direction names the target
(``to_<domain>``). A style of that domain comes from the latent flow (random
styles), from reference images of the domain (their styles averaged), or
from a line between the styles of two references, or is the domain's typical style (the mean style
of its training images, which training stores in the model). :meth:`UnifiedModel.style_components`
and :meth:`UnifiedModel.edit_component` expose the flow's independent
coordinates of a conditioning's styles, so a front end can change one of them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch

from engines.blocks.autoencoder import GatedContent, blend_with_source, check_colour_transform, receptive_radius
from engines.blocks.normalization import TileStatistics
from engines.blocks.styles import interpolate_codes
from engines.unified.networks import DomainStyleEncoder, StyleFlow, StyleGenerator
from napari_i2i.contract.engine_api import (
    Capabilities,
    Engine,
    EngineError,
    SourceStage,
    StyleAxes,
    StyleMode,
    StyleRequest,
    TranslationModel,
)

DIRECTION_PREFIX = "to_"

PRESETS: dict[str, dict[str, Any]] = {
    # StarGAN v2 sizes (docs/methods.md §5): width 64, style 64-d, latent 16-d, 2 + 2 bottleneck
    # blocks. Its 4 downsamplings stop widening at 512 channels; the shared encoder here doubles the
    # width at each one, so 3 reach those 512 (32.9 M parameters; 4 would be 1024 wide, 188 M).
    "paper": {
        "channels": 3, "domains": ["a", "b"], "dim": 64, "n_downsample": 3, "n_res": 2,
        "style_dim": 64, "latent_dim": 16, "style_downsample": 5, "mlp_dim": 512,
        "flow_transforms": 3, "flow_hidden": 256, "flow_bins": 8, "input_gate": False, "colour_transform": False,
        "typical_styles": True,
    },
    # Narrow and shallow enough to train on two CPU cores: one downsampling, as the other small
    # presets (on 64² crops more lost the structure; benchmarks/NOTES.md).
    "small": {
        "channels": 3, "domains": ["a", "b"], "dim": 16, "n_downsample": 1, "n_res": 2,
        "style_dim": 16, "latent_dim": 8, "style_downsample": 3, "mlp_dim": 64,
        "flow_transforms": 2, "flow_hidden": 32, "flow_bins": 8, "input_gate": False, "colour_transform": False,
        "typical_styles": True,
    },
}

MODES = (StyleMode.RANDOM, StyleMode.REFERENCE, StyleMode.INTERPOLATE)


@dataclass
class UnifiedConditioning:
    """Styles of one target domain: one output per row of ``styles``."""

    direction: str
    domain: int  # the target domain's index in the model's ``domains``
    styles: torch.Tensor  # (S, style_dim), float32, on the model's device


class UnifiedModel(TranslationModel):
    """``G(c, s)``, the per-domain style encoder ``E^u`` and the latent flow; any domain → any domain."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__()
        # Model files written before input_gate (typical_styles) existed have no key: no gate (no
        # stored styles). Every domain has the model's one `channels`, so the gate can always blend a
        # translation with its input.
        self.config = {"input_gate": False, "colour_transform": False, "typical_styles": False, **config,
                       "domains": list(config["domains"])}
        c, count = self.config, len(self.config["domains"])
        self.generator = StyleGenerator(c["channels"], c["dim"], c["n_downsample"], c["n_res"], c["style_dim"],
                                        c["mlp_dim"], c["input_gate"], c["colour_transform"])
        self.style_encoder = DomainStyleEncoder(c["channels"], c["dim"], c["style_downsample"], c["mlp_dim"],
                                                c["style_dim"], count)
        self.style_flow = StyleFlow(c["latent_dim"], c["style_dim"], count, c["flow_transforms"],
                                    c["flow_hidden"], c["flow_bins"])
        if c["typical_styles"]:  # the zero style until training stores them (store_typical_styles)
            self.register_buffer("typical_styles", torch.zeros(count, c["style_dim"]))

    @property
    def domains(self) -> list[str]:
        return self.config["domains"]

    @property
    def capabilities(self) -> Capabilities:
        channels = self.config["channels"]
        return Capabilities(
            directions={direction_to(name): (channels, channels) for name in self.domains},
            style_modes=MODES + ((StyleMode.TYPICAL,) if self.has_typical_styles else ()),
            domains=tuple(self.domains),
            size_multiple=2 ** self.config["n_downsample"],
            context=receptive_radius(self.config["n_downsample"], self.config["n_res"]),
        )

    def domain_index(self, direction: str) -> int:
        """The target domain of ``to_<domain>``."""
        names = [direction_to(name) for name in self.domains]
        if direction not in names:
            raise EngineError(f"this model translates into one of its domains: {', '.join(names)}; "
                              f"not {direction!r}")
        return names.index(direction)

    # --- styles -----------------------------------------------------------------

    @property
    def has_typical_styles(self) -> bool:
        """Whether the model keeps each domain's typical style (models trained before it existed do
        not); known from the config alone, as front ends offer modes before reading weights."""
        return bool(self.config.get("typical_styles"))

    def store_typical_styles(self, styles: torch.Tensor) -> None:
        """Keep ``(domains, style_dim)`` styles, one per domain, as the domains' typical styles."""
        if not self.has_typical_styles:
            raise EngineError("this unified model has no place for typical styles (config typical_styles: false)")
        self.typical_styles.copy_(styles)

    def sample_styles(self, domain: int, n: int, seed: int) -> torch.Tensor:
        """``(n, style_dim)``: the flow applied to ``n`` draws of ``N(0, I)`` made on the CPU from
        ``seed`` (the same styles on every device)."""
        if n < 1:
            raise EngineError("the number of random styles must be at least 1")
        latents = torch.randn(n, self.config["latent_dim"], generator=torch.Generator().manual_seed(seed))
        device = self.style_flow.lift.weight.device
        return self.style_flow(latents.to(device), self._domains(domain, n)).float()

    def reference_style(self, reference: torch.Tensor, domain: int, position: int = 1) -> torch.Tensor:
        """``(style_dim,)``: the style in ``domain`` of one reference's crops ``(n, C, h, w)``."""
        kind = f"style references for {direction_to(self.domains[domain])}"
        return self.style_encoder.mean_style(reference, domain, position, kind)

    def reference_styles(self, references: Sequence[torch.Tensor], domain: int) -> torch.Tensor:
        """``(1, style_dim)``: the mean of the references' styles."""
        if not references:
            raise EngineError("style from reference needs at least one reference image of the target domain")
        styles = [self.reference_style(r, domain, i) for i, r in enumerate(references, 1)]
        return torch.stack(styles).mean(0, keepdim=True)

    def condition(self, request: StyleRequest) -> UnifiedConditioning:
        domain = self.domain_index(request.direction)
        with torch.no_grad():
            if request.mode is StyleMode.RANDOM:
                styles = self.sample_styles(domain, request.n_samples, request.seed)
            elif request.mode is StyleMode.REFERENCE:
                styles = self.reference_styles(list(request.references), domain)
            elif request.mode is StyleMode.INTERPOLATE:
                styles = self._interpolated(list(request.references), domain, request.n_samples)
            elif request.mode is StyleMode.TYPICAL and self.has_typical_styles:
                styles = self.typical_styles[domain:domain + 1].float()
            else:
                modes = self.capabilities.style_modes
                raise EngineError(f"this model has no {request.mode.value!r} style mode "
                                  f"(styles: {', '.join(m.value for m in modes)})")
        return UnifiedConditioning(request.direction, domain, styles)

    def _interpolated(self, references: list[torch.Tensor], domain: int, steps: int) -> torch.Tensor:
        if len(references) != 2:
            raise EngineError("style interpolation goes from the style of one reference image to that of "
                              f"another: it needs exactly 2 references, got {len(references)}")
        first, second = (self.reference_style(r, domain, i) for i, r in enumerate(references, 1))
        return interpolate_codes(first, second, steps)

    # --- one style component at a time ---------------------------------------------

    def style_components(self, conditioning: UnifiedConditioning) -> torch.Tensor:
        """``(S, latent_dim)``: the flow's independent coordinates ``z`` of each style."""
        with torch.no_grad():
            styles = conditioning.styles
            return self.style_flow.coordinates(styles, self._domains(conditioning.domain, len(styles))).float()

    def edit_component(self, conditioning: UnifiedConditioning, index: int, value: float) -> UnifiedConditioning:
        """A new conditioning whose styles have coordinate ``index`` set to ``value``, the others kept."""
        if not 0 <= index < self.config["latent_dim"]:
            raise EngineError(f"style components are numbered 0 to {self.config['latent_dim'] - 1}, not {index}")
        with torch.no_grad():
            styles = conditioning.styles
            domains = self._domains(conditioning.domain, len(styles))
            edited = self.style_flow.edit(styles, domains, index, float(value)).float()
        return replace(conditioning, styles=edited)

    def style_axes(self, conditioning: UnifiedConditioning) -> StyleAxes:
        """The flow's independent components (standard normal for latent styles), each moved with
        :meth:`edit_component`; the first style of ``conditioning`` is the one moved."""
        first = replace(conditioning, styles=conditioning.styles[:1])
        start = self.style_components(first)[0].cpu()

        def place(values: torch.Tensor) -> UnifiedConditioning:
            placed = first
            for index in torch.nonzero(values.float().cpu() != start).flatten().tolist():
                placed = self.edit_component(placed, index, float(values[index]))
            return placed

        return StyleAxes(tuple(f"component {i}" for i in range(len(start))), start, place)

    def _domains(self, domain: int, n: int) -> torch.Tensor:
        return torch.full((n,), domain, dtype=torch.long, device=self.style_flow.lift.weight.device)

    # --- translation ------------------------------------------------------------

    def translate(self, images: torch.Tensor, conditioning: UnifiedConditioning) -> torch.Tensor:
        return self.generator(images, conditioning.styles.to(images.dtype))

    def encode_content(self, images: torch.Tensor, direction: str) -> GatedContent | torch.Tensor:
        """The shared content encoder's code (the same for every target domain); with the input
        gate, together with the images the gate blends with."""
        content = self.generator.content_encoder(images)
        return GatedContent(content, images) if self.config["input_gate"] else content

    def decode_content(self, content: GatedContent | torch.Tensor, conditioning: UnifiedConditioning) -> torch.Tensor:
        code, images = GatedContent.parts(content)
        return self.generator.decode(code, conditioning.styles.to(code.dtype), images)

    def stages(self, conditioning: UnifiedConditioning) -> list[Callable[[torch.Tensor], torch.Tensor]]:
        """Encoder blocks, style broadcast, AdaIN blocks, upsampling: one block each (as MUNIT's),
        then, with the input gate, the blend with the input (a :class:`SourceStage`)."""
        decoder = self.generator.decoder
        styles = conditioning.styles

        def broadcast(content: torch.Tensor) -> torch.Tensor:
            return content.expand(styles.shape[0], -1, -1, -1) if content.shape[0] == 1 else content

        def adain_block(index: int) -> Callable[[torch.Tensor], torch.Tensor]:
            def run(x: torch.Tensor) -> torch.Tensor:
                return decoder.res_blocks[index](x, decoder.adain_params(styles.to(x.dtype))[index])

            return run

        return [*self.generator.content_encoder.model, broadcast,
                *(adain_block(i) for i in range(len(decoder.res_blocks))), *decoder.upsample,
                *([SourceStage(blend_with_source)] if self.config["input_gate"] else [])]

    def shared_statistics(self) -> TileStatistics:
        return TileStatistics(self)


def direction_to(domain: str) -> str:
    return f"{DIRECTION_PREFIX}{domain}"


def check_domains(domains: Any) -> None:
    """Two or more distinct, non-empty domain names."""
    if (not isinstance(domains, (list, tuple)) or len(domains) < 2
            or not all(isinstance(name, str) and name.strip() for name in domains)):
        raise EngineError(f"unified config: domains must be a list of two or more names, got {domains!r}")
    if len(set(domains)) != len(domains):
        raise EngineError(f"unified config: domain names must differ, got {list(domains)}")


class UnifiedEngine(Engine):
    name = "unified"
    description = ("multi-domain translation in one style space: latent (flow) or reference styles of the "
                   "target domain, one style component at a time")
    presets = PRESETS

    def build(self, config: Mapping[str, Any]) -> UnifiedModel:
        config = dict(config)
        check_domains(config.get("domains"))
        integers = {key: value for key, value in config.items() if key != "domains"}
        # "domains" is not an integer (checked above) and input_gate a flag; both keys may be absent here
        self.check_integer_config(integers, minimum={"n_downsample": 0, "n_res": 0, "style_downsample": 0},
                                  choices={"domains": ()}, flags=("input_gate", "colour_transform", "typical_styles"))
        check_colour_transform(config, self.name)
        if config["style_dim"] < config["latent_dim"]:
            raise EngineError(f"unified config: style_dim ({config['style_dim']}) must be at least "
                              f"latent_dim ({config['latent_dim']})")
        if config["flow_bins"] < 2:
            raise EngineError(f"unified config: flow_bins must be at least 2, got {config['flow_bins']}")
        return UnifiedModel(config)
