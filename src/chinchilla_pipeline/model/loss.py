"""Cross-entropy of the output head without a (B·T) x V logits tensor.

``GPT.forward``'s plain path takes the logits over the padded vocabulary
(B x T x 50,304), slices the real 50,257 columns, which copies them, and under
bf16 autocast upcasts that copy to float32 for ``F.cross_entropy``: at 64 x 1,024
tokens that is 6.6 GB of bf16 logits plus 13 GB of float32. ``chunked_cross_entropy``
takes ``CHUNK_ROWS`` rows at a time and computes the gradients of the hidden
states and of the head's weight in the forward pass (the loss is a scalar, so
backward only scales them), the way Liger-Kernel's fused linear cross-entropy
(linkedin/Liger-Kernel) does: only one chunk's logits ever exist.
The value and gradients equal the plain path's up to float rounding
(summation order); ``tests/test_model.py`` checks it.

With ``softcap`` c (nanochat: 15) the logits are z' = c·tanh(z/c) inside each chunk, as
``NanoChat.forward``'s plain path; the chain rule adds dz'/dz = 1 - (z'/c)² to the gradient.
"""

from __future__ import annotations

import torch

CHUNK_ROWS = 4_096  # rows (tokens) per chunk: 4,096 x 50,257 float32 logits = 0.8 GB at a time


class _ChunkedLinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        targets: torch.Tensor,
        vocab: int,
        chunk: int,
        need_grad: bool,
        softcap: float | None,
    ) -> torch.Tensor:
        n = hidden.size(0)
        w = weight[:vocab]
        grad_hidden = torch.empty_like(hidden) if need_grad else None
        grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_grad else None
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        for start in range(0, n, chunk):
            h, t = hidden[start : start + chunk], targets[start : start + chunk]
            logits = (h @ w.t()).float()  # bf16 matmul under autocast, as the plain path's head
            if softcap is not None:
                logits = softcap * torch.tanh(logits / softcap)
            lse = torch.logsumexp(logits, dim=-1)
            total += (lse - logits.gather(1, t[:, None]).squeeze(1)).sum()
            if not need_grad:  # evaluation: one matmul per chunk, no gradient buffers
                continue
            grad = torch.softmax(logits, dim=-1)  # d loss / d logits = (softmax - one-hot) / n
            grad.scatter_add_(1, t[:, None], torch.full_like(t[:, None], -1, dtype=grad.dtype))
            grad /= n
            if softcap is not None:
                grad *= 1 - (logits / softcap).square()  # d tanh = 1 - tanh²
            # Under autocast both matmuls run in bf16, as the plain path's backward through the head.
            grad_hidden[start : start + chunk] = (grad @ w).to(hidden.dtype)
            grad_weight[:vocab] += (grad.t() @ h).float()
        if need_grad:
            ctx.save_for_backward(grad_hidden, grad_weight.to(weight.dtype))
        return total / n

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        grad_hidden, grad_weight = ctx.saved_tensors
        return grad_hidden * grad_out, grad_weight * grad_out, None, None, None, None, None


def chunked_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    vocab: int,
    chunk: int = CHUNK_ROWS,
    softcap: float | None = None,
) -> torch.Tensor:
    """Mean cross-entropy of ``hidden @ weight[:vocab].T`` (soft-capped by ``softcap`` if given) against ``targets``.

    ``hidden``: (N, C), the final norm's output; ``weight``: (padded V, C), the head;
    ``targets``: (N,) int64 below ``vocab``. Padding rows of ``weight`` get zero gradient.
    """
    need_grad = torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad)
    return _ChunkedLinearCrossEntropy.apply(hidden, weight, targets, vocab, chunk, need_grad, softcap)
