class Photo < ApplicationRecord
  MAX_IMAGE_SIZE = 10.megabytes

  has_one_attached :image

  validates :title, presence: true, length: { maximum: 255 }
  validate :image_is_an_acceptable_picture

  private

  def image_is_an_acceptable_picture
    unless image.attached?
      errors.add(:image, "must be attached")
      return
    end

    errors.add(:image, "must be an image") unless image.content_type.to_s.start_with?("image/")
    errors.add(:image, "must be smaller than 10 MB") if image.byte_size > MAX_IMAGE_SIZE
  end
end
