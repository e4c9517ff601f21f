class CreatePins < ActiveRecord::Migration[7.2]
  def change
    create_table :pins do |t|
      t.string :title, null: false
      t.text :body
      t.references :user, foreign_key: true

      t.timestamps
    end
  end
end
