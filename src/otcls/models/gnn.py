"""GIN / GCN molecule encoders with an optional virtual node (the OGB molecule baselines).

Atoms and bonds are embedded by OGB's ``AtomEncoder`` / ``BondEncoder``; every layer is
``conv → BatchNorm → ReLU (not after the last) → dropout``, then graphs are pooled (mean by
default). ``forward(batch)`` returns one ``out_features``-vector per graph; the classifier
layer lives in the TransportHead.
"""
from __future__ import annotations

import torch
from torch import nn

from otcls._extras import require

require("mol", "torch_geometric", "ogb")

from torch_geometric.nn import GINEConv, MessagePassing, global_add_pool, global_max_pool, global_mean_pool  # noqa: E402
from torch_geometric.utils import degree  # noqa: E402

POOLS = {"mean": global_mean_pool, "sum": global_add_pool, "max": global_max_pool}


class BondGCNConv(MessagePassing):
    """GCN layer with bond embeddings (OGB's molecule variant), ``d_i = deg(i) + 1``:

    ``h_i' = Σ_{j∈N(i)} relu(W h_j + e_ij) / sqrt(d_i d_j) + relu(W h_i + r) / d_i``
    with ``e_ij`` = BondEncoder(bond features) and ``r`` a learned root embedding.
    """

    def __init__(self, dim: int) -> None:
        super().__init__(aggr="add")
        from ogb.graphproppred.mol_encoder import BondEncoder

        self.linear = nn.Linear(dim, dim)
        self.root = nn.Parameter(torch.zeros(1, dim))
        self.bond = BondEncoder(dim)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor) -> torch.Tensor:
        x = self.linear(x)
        src, dst = edge_index
        deg = degree(src, x.size(0), dtype=x.dtype) + 1
        inv_sqrt = deg.pow(-0.5)
        norm = inv_sqrt[src] * inv_sqrt[dst]
        out = self.propagate(edge_index, x=x, edge_attr=self.bond(edge_attr), norm=norm)
        return out + torch.relu(x + self.root) / deg.view(-1, 1)

    def message(self, x_j: torch.Tensor, edge_attr: torch.Tensor, norm: torch.Tensor) -> torch.Tensor:
        return norm.view(-1, 1) * torch.relu(x_j + edge_attr)


class BondGINConv(nn.Module):
    """GIN layer with bond embeddings: ``h_i' = MLP((1+ε) h_i + Σ_j relu(h_j + e_ij))`` (PyG's GINEConv),
    MLP = Linear(d,2d) → BatchNorm → ReLU → Linear(2d,d), ε learned."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        from ogb.graphproppred.mol_encoder import BondEncoder

        mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.BatchNorm1d(2 * dim), nn.ReLU(), nn.Linear(2 * dim, dim))
        self.conv = GINEConv(mlp, train_eps=True)
        self.bond = BondEncoder(dim)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor) -> torch.Tensor:
        return self.conv(x, edge_index, self.bond(edge_attr))


CONVS = {"gin": BondGINConv, "gcn": BondGCNConv}


class MoleculeGNN(nn.Module):
    """Graph encoder: AtomEncoder → ``num_layers`` × (conv, BN, ReLU, dropout) → pooling.

    Args:
        conv: ``"gin"`` or ``"gcn"``.
        num_layers / hidden / dropout: OGB defaults 5 / 300 / 0.5.
        virtual_node: add a virtual node linked to every atom; its state ``v`` is added to all
            atoms before each layer and updated by ``v ← MLP(Σ_i h_i + v)`` between layers.
        residual: add each layer's input to its output.
        pooling: ``"mean"`` (OGB default), ``"sum"`` or ``"max"``.
    """

    def __init__(self, conv: str = "gin", num_layers: int = 5, hidden: int = 300, dropout: float = 0.5,
                 virtual_node: bool = False, residual: bool = False, pooling: str = "mean") -> None:
        super().__init__()
        from ogb.graphproppred.mol_encoder import AtomEncoder

        if conv not in CONVS:
            raise ValueError(f"conv must be one of {sorted(CONVS)}, got '{conv}'")
        if pooling not in POOLS:
            raise ValueError(f"pooling must be one of {sorted(POOLS)}, got '{pooling}'")
        if num_layers < 1 or hidden < 1:
            raise ValueError(f"num_layers and hidden must be >= 1, got {num_layers} and {hidden}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.out_features = hidden
        self.dropout, self.residual, self.pool = dropout, residual, POOLS[pooling]
        self.atom = AtomEncoder(hidden)
        self.convs = nn.ModuleList(CONVS[conv](hidden) for _ in range(num_layers))
        self.norms = nn.ModuleList(nn.BatchNorm1d(hidden) for _ in range(num_layers))
        self.virtual = None
        if virtual_node:
            self.virtual = nn.Embedding(1, hidden)
            nn.init.zeros_(self.virtual.weight)
            self.virtual_mlps = nn.ModuleList(
                nn.Sequential(nn.Linear(hidden, 2 * hidden), nn.BatchNorm1d(2 * hidden), nn.ReLU(),
                              nn.Linear(2 * hidden, hidden), nn.BatchNorm1d(hidden), nn.ReLU())
                for _ in range(num_layers - 1))

    def forward(self, batch) -> torch.Tensor:
        """PyG batch with ``x`` (atoms×9), ``edge_index``, ``edge_attr`` (bonds×3), ``batch`` → (graphs, hidden)."""
        x, edge_index, edge_attr, graph = batch.x, batch.edge_index, batch.edge_attr, batch.batch
        if x.dim() != 2 or x.size(1) != 9 or edge_attr is None or edge_attr.size(-1) != 3:
            raise ValueError("expected OGB molecule features: x (atoms, 9) and edge_attr (bonds, 3) from "
                             "ogb.utils.smiles2graph / PygGraphPropPredDataset")
        n_graphs = int(graph.max()) + 1 if graph.numel() else 0
        h = self.atom(x)
        vn = self.virtual.weight.expand(n_graphs, -1) if self.virtual is not None else None
        last = len(self.convs) - 1
        for layer, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            if vn is not None:
                h = h + vn[graph]
            out = norm(conv(h, edge_index, edge_attr))
            if layer < last:
                out = torch.relu(out)
            out = nn.functional.dropout(out, self.dropout, self.training)
            if vn is not None and layer < last:
                pooled = global_add_pool(h, graph, size=n_graphs) + vn
                vn = nn.functional.dropout(self.virtual_mlps[layer](pooled), self.dropout, self.training)
            h = out + h if self.residual else out
        return self.pool(h, graph, size=n_graphs)
