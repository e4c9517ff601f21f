class PinsController < ApplicationController
  def index
    @pins = Pin.with_attached_image.order(created_at: :desc)
  end

  def show
    @pin = Pin.find(params[:id])
  end

  def new
    @pin = Pin.new
  end

  def create
    @pin = Pin.new(pin_params)
    if @pin.save
      redirect_to @pin, notice: "Pinned."
    else
      render :new, status: :unprocessable_entity
    end
  end

  private
    def pin_params
      params.require(:pin).permit(:title, :body, :image)
    end
end
