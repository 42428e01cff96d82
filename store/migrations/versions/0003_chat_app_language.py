"""chat_link.app_language: the Telegram app's language as last seen

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 12:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("chat_link") as batch:
        batch.add_column(sa.Column("app_language", sa.String(length=8), server_default="", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("chat_link") as batch:
        batch.drop_column("app_language")
