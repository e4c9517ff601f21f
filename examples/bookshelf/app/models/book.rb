class Book < ApplicationRecord
  COVER_TYPES = %w[image/png image/jpeg image/gif image/webp].freeze

  has_one_attached :cover

  validates :title, presence: true
  validate :cover_is_an_image

  private
    def cover_is_an_image
      if cover.attached? && !cover.content_type.in?(COVER_TYPES)
        errors.add(:cover, "must be a PNG, JPEG, GIF or WebP image")
      end
    end
end
