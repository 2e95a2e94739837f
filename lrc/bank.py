"""A memory bank of teacher vectors for the `bank` negatives mode (K negatives independent of batch size).

A first-in-first-out queue of the teacher's mapped-layer representations from earlier batches (MoCo style), so
K stays fixed however small the batch or however many processes share it. Entries keep their example index, so
a sample is never its own negative when it comes round again in a later epoch.
"""

from __future__ import annotations

import torch


class NegativeBank:
    def __init__(self, size: int, seed: int = 0):
        self.size = size
        self.vectors: list[torch.Tensor] | None = None  # per layer: [Q, D] or [Q, L, D]
        self.masks: torch.Tensor | None = None  # [Q, L] in token mode
        self.ids: torch.Tensor | None = None  # [Q]
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return 0 if self.ids is None else int(self.ids.shape[0])

    def add(self, layers: list[torch.Tensor], ids: torch.Tensor, mask: torch.Tensor | None = None,
            max_length: int | None = None) -> None:
        layers = [x.detach() for x in layers]
        if layers[0].dim() == 3 and max_length is not None:
            pad = max_length - layers[0].shape[1]
            if pad > 0:
                layers = [torch.nn.functional.pad(x, (0, 0, 0, pad)) for x in layers]
                mask = torch.nn.functional.pad(mask, (0, pad))
        if self.vectors is None:
            self.vectors, self.masks, self.ids = layers, mask, ids.detach()
        else:
            self.vectors = [torch.cat([old, new])[-self.size:] for old, new in zip(self.vectors, layers)]
            self.ids = torch.cat([self.ids, ids.detach()])[-self.size:]
            if mask is not None:
                self.masks = torch.cat([self.masks, mask])[-self.size:]

    def sample(self, ids: torch.Tensor, k: int, length: int | None = None
               ) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """K random bank entries per sample: per layer `[B, K, D]` (or `[B, K, L, D]`), and a validity mask.

        The mask is `[B, K]` per-sample (or `[B, K, L]` per token); entries that are the sample itself are 0.
        """
        assert self.ids is not None
        b, q = ids.shape[0], self.ids.shape[0]
        pick = torch.randint(0, q, (b, k), generator=self.generator).to(self.ids.device)
        not_self = (self.ids[pick] != ids[:, None].to(self.ids.device)).float()  # [B, K]
        out = []
        for vec in self.vectors:
            chosen = vec[pick]  # [B, K, D] or [B, K, Lmax, D]
            if chosen.dim() == 4 and length is not None:
                chosen = chosen[:, :, :length]
            out.append(chosen)
        if self.masks is not None:
            mask = self.masks[pick][:, :, :length].float() * not_self[:, :, None]
        else:
            mask = not_self
        return out, mask

    # ---- checkpointing: a resumed run must draw the same negatives from the same entries ----------------------
    def state_dict(self) -> dict[str, torch.Tensor]:
        state = {"generator": self.generator.get_state()}
        if self.ids is not None:
            state["ids"] = self.ids
            state.update({f"vectors_{i}": v for i, v in enumerate(self.vectors)})
            if self.masks is not None:
                state["masks"] = self.masks
        return {k: v.detach().cpu().contiguous() for k, v in state.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor], device: torch.device | None = None) -> None:
        self.generator.set_state(state["generator"])
        if "ids" not in state:
            self.vectors = self.masks = self.ids = None
            return
        move = (lambda t: t.to(device)) if device is not None else (lambda t: t)
        self.ids = move(state["ids"])
        self.vectors = [move(state[f"vectors_{i}"]) for i in range(sum(k.startswith("vectors_") for k in state))]
        self.masks = move(state["masks"]) if "masks" in state else None
