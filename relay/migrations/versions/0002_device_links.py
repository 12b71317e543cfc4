"""device linking: link requests, device-addressed blobs

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "device_links",
        sa.Column("id_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("code_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("device_name", sa.String(length=100), nullable=False),
        sa.Column("signature_key", sa.LargeBinary(length=32), nullable=False),
        sa.Column("box_key", sa.LargeBinary(length=32), nullable=False),
        sa.Column("proof", sa.LargeBinary(length=64), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=True),
        sa.Column("approved_by", sa.String(length=64), nullable=True),
        sa.Column("history_blob", sa.String(length=64), nullable=True),
        sa.Column("history_key", sa.LargeBinary(), nullable=True),
        sa.PrimaryKeyConstraint("id_hash"),
        sa.UniqueConstraint("code_hash"),
    )
    with op.batch_alter_table("device_links", schema=None) as batch_op:
        batch_op.create_index("ix_device_links_device", ["device_id"], unique=False)
    with op.batch_alter_table("blobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("recipient_device", sa.String(length=64), nullable=True))
        batch_op.alter_column("group_id", existing_type=sa.LargeBinary(length=64),
                              nullable=True)


def downgrade() -> None:
    with op.batch_alter_table("blobs", schema=None) as batch_op:
        batch_op.alter_column("group_id", existing_type=sa.LargeBinary(length=64),
                              nullable=False)
        batch_op.drop_column("recipient_device")
    with op.batch_alter_table("device_links", schema=None) as batch_op:
        batch_op.drop_index("ix_device_links_device")
    op.drop_table("device_links")
