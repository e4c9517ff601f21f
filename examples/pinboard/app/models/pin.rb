class Pin < ApplicationRecord
  belongs_to :user, optional: true
  has_one_attached :image

  validates :title, presence: true, length: { maximum: 120 }
end
